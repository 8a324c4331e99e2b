"""KeySet: exact membership for millions of ids at 16 bytes a key."""

from __future__ import annotations

import numpy as np

from currents_relay.keyset import KeySet, first_new, keys_of


def test_membership_and_first_occurrence():
    seen = KeySet()
    batch = keys_of(["a", "b", "a", "c"])
    keep = first_new(batch, seen)
    assert keep.tolist() == [True, True, False, True]
    seen.add(batch.filter(keep))
    assert len(seen) == 3
    assert seen.contains(keys_of(["c", "d", "a"])).tolist() == [True, False, True]


def test_a_million_keys_cost_about_16_bytes_each():
    seen = KeySet()
    ids = [f"{i:032x}" for i in range(1_000_000)]
    for start in range(0, len(ids), 100_000):
        chunk = keys_of(ids[start : start + 100_000])
        seen.add(chunk.filter(first_new(chunk, seen)))
    assert len(seen) == 1_000_000
    assert seen._frame().estimated_size() <= 16 * 1_000_000
    assert not seen.contains(keys_of([f"x{i}" for i in range(1000)])).any()
    assert np.all(seen.contains(keys_of(ids[::1000])))
