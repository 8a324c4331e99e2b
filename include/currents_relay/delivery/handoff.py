"""A bounded hand-off to one worker thread, its errors raised back in the caller.

The push reads and encodes the next batches while the one before is on the wire: the
requests (sockets, gzip, the kernel that writes JSON and polars all release the GIL) run on
a thread of their own, fed through a queue of a few items, so memory stays bounded. The
worker runs the items in order, one at a time; once one raises, it runs no more, and the
error is raised by the caller's next `put` or by leaving the `with` block.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

Item = TypeVar("Item")
_DONE = object()


class Handoff(Generic[Item]):
    """`with Handoff(work) as handoff: handoff.put(item)`: `work(item)` on one thread, in order."""

    def __init__(self, work: Callable[[Item], None], depth: int = 2, name: str = "handoff") -> None:
        self._work = work
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Handoff[Item]:
        self._thread.start()
        return self

    __enter__ = start

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is None:  # after an error, items are only drained
                try:
                    self._work(item)  # type: ignore[arg-type]
                except BaseException as error:  # raised again in the caller
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Item) -> None:
        """Queue `item` (waits while the queue is full); raises the worker's error, if any."""
        self._raise()
        while True:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                self._raise()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.finish(error)

    def finish(self, error: BaseException | None = None) -> None:
        """Wait for the queued items (the caller's own `error` first stops the worker), then
        raise the worker's error, if any and if the caller has none of its own."""
        if error is not None and self._error is None:
            self._error = error  # the worker drains the rest without running it
        self._queue.put(_DONE)
        self._thread.join()
        if error is None:
            self._raise()
