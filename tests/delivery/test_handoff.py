"""The hand-off runs items in order on one thread and raises its errors back."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from currents_relay.delivery.handoff import BACKGROUND_NICE, Handoff, read_ahead


def test_items_run_in_order_on_one_other_thread():
    seen: list[tuple[int, str]] = []
    with Handoff(lambda item: seen.append((item, threading.current_thread().name)), 1) as h:
        for item in range(50):
            h.put(item)
    assert [item for item, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"handoff"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
def test_a_background_worker_runs_at_a_lower_priority_and_the_caller_keeps_its_own():
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: list[int] = []
    own = nice()
    with Handoff(lambda item: seen.append(nice()), background=True) as handoff:
        handoff.put(1)
    with Handoff(lambda item: seen.append(nice())) as handoff:
        handoff.put(2)
    assert seen == [max(own, BACKGROUND_NICE), own]
    assert nice() == own


def test_an_error_stops_the_work_and_is_raised_by_the_next_put():
    ran: list[int] = []
    release = threading.Event()

    def work(item: int) -> None:
        if item == 3:
            raise ValueError("partner said no")
        ran.append(item)
        release.wait(5)

    with pytest.raises(ValueError, match="partner said no"), Handoff(work, depth=1) as handoff:
        release.set()
        for item in range(1_000):
            handoff.put(item)  # raises once the worker has failed: never all 1,000
    assert ran == [0, 1, 2]


def test_an_error_of_the_last_item_is_raised_on_leaving():
    def work(item: int) -> None:
        raise RuntimeError(f"item {item}")

    with pytest.raises(RuntimeError, match="item 0"), Handoff(work) as handoff:
        handoff.put(0)


def test_the_callers_error_wins_and_the_queued_items_are_not_run():
    ran: list[int] = []
    started, release = threading.Event(), threading.Event()

    def work(item: int) -> None:
        started.set()
        release.wait(5)
        ran.append(item)

    with pytest.raises(KeyError), Handoff(work, depth=2) as handoff:
        handoff.put(0)
        started.wait(5)
        handoff.put(1)
        handoff.put(2)
        threading.Timer(0.2, release.set).start()  # item 0 finishes after the error
        raise KeyError("reading the lake failed")
    assert ran == [0]  # the item at work finishes; the queued ones are left


def test_read_ahead_yields_every_item_in_order_from_another_thread():
    threads: set[str] = set()

    def items():
        for item in range(100):
            threads.add(threading.current_thread().name)
            yield item

    assert list(read_ahead(items(), depth=3)) == list(range(100))
    assert threads == {"read-ahead"}


def test_read_ahead_raises_the_producers_error_where_its_item_would_come():
    def items():
        yield 1
        yield 2
        raise OSError("lake file unreadable")

    seen = []
    with pytest.raises(OSError, match="unreadable"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_producer_and_closes_its_source():
    produced, closed = [], threading.Event()

    def items():
        try:
            for item in range(1_000_000):
                produced.append(item)
                yield item
        finally:
            closed.set()

    for item in read_ahead(items(), depth=2):
        if item == 5:
            break
    assert closed.wait(5) and len(produced) <= 5 + 1 + 2 + 1  # depth ahead, no further


def test_weighed_items_wait_up_to_the_depth_in_weight_and_a_heavy_one_waits_alone():
    release = threading.Event()
    ran: list[int] = []

    def work(item: int) -> None:
        release.wait(5)
        ran.append(item)

    handoff = Handoff(work, depth=10, weigh=lambda item: item).start()
    handoff.put(1)  # taken by the worker, which waits
    while handoff._items:  # until the worker has it
        time.sleep(0.001)
    handoff.put(4)
    handoff.put(6)  # 10 waiting: full
    third = threading.Thread(target=handoff.put, args=(3,))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # 4 + 6 + 3 would be more than 10
    release.set()
    third.join(5)
    handoff.put(50)  # heavier than the depth: goes once nothing else waits
    handoff.finish()
    assert ran == [1, 4, 6, 3, 50]
