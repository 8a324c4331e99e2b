"""Fewer cyclic garbage-collector passes while a run builds millions of short-lived objects.

Decoded JSON events, rows and request bodies hold no reference cycles, yet every 700
allocations CPython's collector walks the young objects, and now and then all of them: a
fifth of an ingest's time went there. Raising the first threshold keeps collection (memory
still returns: reference counting frees acyclic objects at once) but makes it rare.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

RELAXED_THRESHOLD = 100_000


@contextmanager
def rare_gc() -> Iterator[None]:
    """Within the block, collect the youngest generation every 100,000 allocations, not 700."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], RELAXED_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
