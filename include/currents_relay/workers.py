"""Work on threads of its own, a bounded amount ahead, errors raised back to the caller.

`read_ahead(items)`: the push reads the lake's next chunks on one thread while the caller
encodes the last ones.

`Senders`: threads working through one bounded queue: the requests a push has in flight,
and, on one thread (items in order), the ledger's Parquet copy and the lake's file writes.

`with Senders(work, threads=8, depth=...) as senders: senders.put(item)` runs `work(item)`
on up to `threads` threads at once (a `ThreadPoolExecutor`), in any order (in order with one
thread). At most `depth` (in `weigh` units) waits to be started, so the producer (reading and
encoding the lake) stays a little ahead and memory stays bounded. The first error stops the
others after their current item; items still waiting are dropped, never worked (a push's
unsent batches stay pending), and the error is raised by the next `put`, or on leaving the
`with` block.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

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


class Senders(Generic[Item]):
    def __init__(
        self,
        work: Callable[[Item], None],
        threads: int,
        depth: int,
        weigh: Callable[[Item], int] = lambda item: 1,
        name: str = "send",
    ) -> None:
        self._work = work
        self._depth = depth
        self._weigh = weigh
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix=name)
        self._waiting = 0  # the weight of the items not started yet
        self._changed = threading.Condition()
        self._error: BaseException | None = None

    def __enter__(self) -> Senders[Item]:
        return self

    def _run(self, item: Item, weight: int) -> None:
        with self._changed:
            self._waiting -= weight
            self._changed.notify_all()
            if self._error is not None:
                return  # after an error, waiting items are dropped
        try:
            self._work(item)
        except BaseException as error:  # raised again in the producer
            with self._changed:
                self._error = self._error or error
                self._changed.notify_all()

    def put(self, item: Item) -> None:
        """Queue `item`, waiting while the queue is full; raises a worker's error, if any."""
        weight = self._weigh(item)
        with self._changed:
            while self._waiting and self._waiting + weight > self._depth and not self._error:
                self._changed.wait()
            if self._error is not None:
                raise self._error
            self._waiting += weight
        self._pool.submit(self._run, item, weight)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.finish(error)

    def finish(self, error: BaseException | None = None) -> None:
        """Wait for the queued items (after the caller's own `error`, they are dropped), then
        raise a worker's error, if any and if the caller has none of its own."""
        with self._changed:
            if error is not None and self._error is None:
                self._error = error  # the workers drop what waits
        self._pool.shutdown(wait=True)
        if error is None and self._error is not None:
            raise self._error
