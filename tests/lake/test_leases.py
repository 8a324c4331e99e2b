"""Leases: one holder at a time, a clear message for the next, takeover only once expired,
kept by renewal, lost for good once another run took it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseHeld, LeaseLost, LeaseSettings, read_lease
from tests.conftest import HOUR, ROOT

QUICK = LeaseSettings(ttl=2.0, wait=0.0)


def test_a_second_run_waits_then_fails_naming_the_holder_and_since(lake_url):
    lake = Lake(lake_url)
    with Lease(lake, HOUR, "push-segment", "push of segment", QUICK):
        second = Lease(lake, HOUR, "push-segment", "push of segment", LeaseSettings(2.0, 1.5))
        started = time.monotonic()
        with pytest.raises(LeaseHeld) as held:
            second.acquire()
        assert 1.4 < time.monotonic() - started < 5
        message = str(held.value)
        assert "held by push of segment" in message and f"pid {os.getpid()}" in message
        assert "since 20" in message  # an ISO time
        # another destination's lease of the same hour is free
        with Lease(lake, HOUR, "push-mparticle", "push of mparticle", QUICK):
            pass
    with Lease(lake, HOUR, "push-segment", "push of segment", QUICK):  # released: free again
        pass
    assert read_lease(lake, HOUR, "push-segment") is None


def test_a_waiting_run_takes_the_lease_once_it_is_released(lake_url):
    lake = Lake(lake_url)
    first = Lease(lake, HOUR, "process", "process", QUICK).acquire()
    waiting = Lease(lake, HOUR, "process", "process", LeaseSettings(ttl=2.0, wait=30))
    import threading

    threading.Timer(1.0, first.release).start()
    started = time.monotonic()
    waiting.acquire()
    assert 0.9 < time.monotonic() - started < 10
    waiting.release()


def test_renewal_keeps_a_lease_past_its_time_to_live(lake_url):
    lake = Lake(lake_url)
    with Lease(lake, HOUR, "process", "process", LeaseSettings(ttl=1.5, wait=0)) as held:
        time.sleep(4)  # well past one time to live
        held.check()
        with pytest.raises(LeaseHeld):
            Lease(lake, HOUR, "process", "other", LeaseSettings(ttl=1.5, wait=0)).acquire()


def test_a_lease_not_renewed_is_taken_over_and_its_holder_stops(lake_url):
    lake = Lake(lake_url)
    stalled = Lease(lake, HOUR, "process", "stalled", LeaseSettings(ttl=1.0, wait=0))
    stalled.acquire()
    stalled._stop.set()  # its renewals stop (a frozen process)
    time.sleep(1.2)
    with pytest.raises(LeaseLost, match="not renewed"):
        stalled.check()
    taker = Lease(lake, HOUR, "process", "taker", LeaseSettings(ttl=5.0, wait=5)).acquire()
    assert read_lease(lake, HOUR, "process")["holder"].startswith("taker")
    assert not stalled.renew()  # its tag is stale: refused
    with pytest.raises(LeaseLost):
        stalled.check()
    stalled.release()  # deletes nothing: the lease is the taker's
    assert read_lease(lake, HOUR, "process")["holder"].startswith("taker")
    taker.release()


def test_the_lease_of_a_killed_holder_expires_and_the_next_run_takes_it(lake_url):
    code = f"""
import sys, time
from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseSettings
Lease(Lake({lake_url!r}), "{HOUR}", "push-zeotap", "push", LeaseSettings(ttl=2.0, wait=0)).acquire()
print("held", flush=True)
time.sleep(60)
"""
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeld, match=f"pid {holder.pid}"):
            Lease(Lake(lake_url), HOUR, "push-zeotap", "push", QUICK).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        with Lease(Lake(lake_url), HOUR, "push-zeotap", "push", LeaseSettings(2.0, 10)):
            assert time.monotonic() - started < 5  # within one time to live of the kill
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
