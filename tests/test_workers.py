"""Senders run items on their threads and raise their errors back; read-ahead produces
items on a thread of its own."""

from __future__ import annotations

import threading
import time

import pytest

from currents_relay.workers import Senders, read_ahead


def test_one_sender_runs_items_in_order_on_one_other_thread():
    seen: list[tuple[int, str]] = []
    with Senders(lambda item: seen.append((item, threading.current_thread().name)), 1, 1) as h:
        for item in range(50):
            h.put(item)
    assert [item for item, _ in seen] == list(range(50))
    names = {name for _, name in seen}
    assert len(names) == 1 and names.pop().startswith("send")


def test_several_senders_work_at_once_and_every_item_runs_once():
    busy, peak, lock = [0], [0], threading.Lock()
    seen: list[int] = []

    def work(item: int) -> None:
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        time.sleep(0.01)
        with lock:
            busy[0] -= 1
            seen.append(item)

    with Senders(work, threads=4, depth=8) as senders:
        for item in range(40):
            senders.put(item)
    assert sorted(seen) == list(range(40)) and peak[0] == 4


def test_an_error_stops_the_work_and_is_raised_by_the_next_put():
    ran: list[int] = []
    release = threading.Event()

    def work(item: int) -> None:
        if item == 3:
            raise ValueError("partner said no")
        ran.append(item)
        release.wait(5)

    with pytest.raises(ValueError, match="partner said no"), Senders(work, 1, depth=1) as handoff:
        release.set()
        for item in range(1_000):
            handoff.put(item)  # raises once the worker has failed: never all 1,000
    assert ran == [0, 1, 2]


def test_an_error_of_the_last_item_is_raised_on_leaving():
    def work(item: int) -> None:
        raise RuntimeError(f"item {item}")

    with pytest.raises(RuntimeError, match="item 0"), Senders(work, 1, 2) as handoff:
        handoff.put(0)


def test_the_callers_error_wins_and_the_queued_items_are_not_run():
    ran: list[int] = []
    started, release = threading.Event(), threading.Event()

    def work(item: int) -> None:
        started.set()
        release.wait(5)
        ran.append(item)

    with pytest.raises(KeyError), Senders(work, 1, depth=2) as handoff:
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
    assert len(threads) == 1 and threads.pop().startswith("read-ahead")


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
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def work(item: int) -> None:
        started.set()
        release.wait(5)
        ran.append(item)

    handoff = Senders(work, 1, depth=10, weigh=lambda item: item)
    handoff.put(1)  # taken by the worker, which waits
    assert started.wait(5)
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
