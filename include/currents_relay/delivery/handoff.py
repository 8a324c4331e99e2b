"""Bounded hand-offs between threads, errors raised back where the items are handled.

The push reads, encodes and sends at once: the lake's next chunks are read on one thread
(`read_ahead`), encoded on the caller's, and the batches sent on a third (`Handoff`), each
stage a few items ahead of the next through a bounded queue, so memory stays bounded.
Sockets, gzip, Arrow, polars and the kernel that writes JSON all release the GIL.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

Item = TypeVar("Item")
_DONE = object()
WAIT = 0.05  # seconds between looks at whether the other side has stopped
BACKGROUND_NICE = 10  # a background worker's nice value (lower priority; 0 is the default)


def lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux, where nice is per thread; elsewhere
    nothing): it yields to the process's other threads when the cores are all busy."""
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, thread) < BACKGROUND_NICE:  # never raised
                os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICE)


def read_ahead(items: Iterable[Item], depth: int = 2, name: str = "read-ahead") -> Iterator[Item]:
    """`items`, produced on a thread of their own, at most `depth` ahead of the consumer; an
    error of the producer is raised where its item would have come. Closing the returned
    iterator (or leaving a loop over it) stops the producer."""
    handed: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(ok: bool, item: object) -> bool:
        while not stop.is_set():
            try:
                handed.put((ok, item), timeout=WAIT)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not hand(True, item):
                    return
            hand(False, _DONE)
        except BaseException as error:  # raised again in the consumer
            hand(False, error)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's `with` blocks end here, in its own thread

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = handed.get()
            if ok:
                yield item  # type: ignore[misc]
            elif item is _DONE:
                return
            else:
                raise item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class Handoff(Generic[Item]):
    """`with Handoff(work) as handoff: handoff.put(item)`: `work(item)` on one thread, in order.

    At most `depth` items wait; with `weigh`, items weighing at most `depth` in all (an item
    heavier than that waits alone), so a producer that makes items in bursts (a chunk's
    batches at once) can hand a whole burst over and go on while they are worked through.
    A `background` worker runs at a lower CPU priority (`lower_priority`): work nobody waits
    for until the end, which should not take a core from the stages that feed the socket."""

    def __init__(
        self,
        work: Callable[[Item], None],
        depth: int = 2,
        name: str = "handoff",
        weigh: Callable[[Item], int] | None = None,
        background: bool = False,
    ) -> None:
        self._work = work
        self._background = background
        self._depth = depth
        self._weigh = weigh or (lambda item: 1)
        self._items: deque[tuple[object, int]] = deque()
        self._held = 0  # the waiting items' weight
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Handoff[Item]:
        self._thread.start()
        return self

    __enter__ = start

    def _run(self) -> None:
        if self._background:
            lower_priority()
        while True:
            with self._changed:
                while not self._items:
                    self._changed.wait()
                item, weight = self._items.popleft()
                self._held -= weight
                self._changed.notify_all()
            if item is _DONE:
                return
            if self._error is None:  # after an error, items are only drained
                try:
                    self._work(item)  # type: ignore[arg-type]
                except BaseException as error:  # raised again in the caller
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _hand(self, item: object, weight: int, *, raising: bool = True) -> None:
        with self._changed:
            while self._items and self._held + weight > self._depth:
                if raising:
                    self._raise()
                self._changed.wait(WAIT)
            self._items.append((item, weight))
            self._held += weight
            self._changed.notify_all()

    def put(self, item: Item) -> None:
        """Queue `item` (waits while the queue is full); raises the worker's error, if any."""
        self._raise()
        self._hand(item, self._weigh(item))

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
        self._hand(_DONE, 0, raising=False)
        self._thread.join()
        if error is None:
            self._raise()
