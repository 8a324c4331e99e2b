"""Reading ahead on a thread of its own, errors raised back where the items are handled.

The push reads the lake's next chunks on one thread (`read_ahead`) while the caller encodes
the last ones, a few items ahead, so memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
_DONE = object()


def read_ahead(items: Iterable[Item], depth: int = 2, name: str = "read-ahead") -> Iterator[Item]:
    """`items`, produced on a thread of their own, at most `depth` ahead of the consumer; an
    error of the producer is raised where its item would have come. Closing the returned
    iterator (or leaving a loop over it) stops the producer and closes `items` on its
    thread (a generator's `with` blocks end there)."""
    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix=name) as producer:
        ahead = deque(producer.submit(next, source, _DONE) for _ in range(depth))
        try:
            while (item := ahead.popleft().result()) is not _DONE:
                ahead.append(producer.submit(next, source, _DONE))
                yield item  # type: ignore[misc]
        finally:
            for future in ahead:
                future.cancel()
            close = getattr(source, "close", None)
            if close is not None:
                producer.submit(close).result()
