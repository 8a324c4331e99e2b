"""Reading ahead on a thread of its own, errors raised back where the items are handled.

The push reads the lake's next chunks on one thread (`read_ahead`) while the caller encodes
the last ones, a few items ahead through a bounded queue, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
_DONE = object()
WAIT = 0.05  # seconds between looks at whether the other side has stopped


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
