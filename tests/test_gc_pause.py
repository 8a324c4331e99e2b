"""The collector is relaxed only within a run, and restored however the run ends."""

from __future__ import annotations

import gc

import pytest

from currents_relay.gc_pause import RELAXED_THRESHOLD, rare_gc


def test_threshold_is_raised_inside_and_restored_after_an_error():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), rare_gc():
        assert gc.get_threshold()[0] == max(before[0], RELAXED_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
