"""KeySet: exact membership for millions of ids at 16 bytes a key."""

from __future__ import annotations

import numpy as np
import polars as pl

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
    assert seen.nbytes == 16 * 1_000_000
    assert seen.runs <= 20  # log2(n) sorted runs at most
    assert not seen.contains(keys_of([f"x{i}" for i in range(1000)])).any()
    assert np.all(seen.contains(keys_of(ids[::1000])))


def test_equal_first_halves_are_told_apart_by_the_second():
    seen = KeySet()
    a = pl.Series("a", [5, 5, 7], dtype=pl.UInt64)
    seen.add(pl.DataFrame({"a": a, "b": pl.Series("b", [1, 2, 3], dtype=pl.UInt64)}))
    probe = pl.DataFrame(
        {
            "a": pl.Series("a", [5, 5, 5, 7, 7, 9], dtype=pl.UInt64),
            "b": pl.Series("b", [1, 2, 3, 3, 1, 1], dtype=pl.UInt64),
        }
    )
    assert seen.contains(probe).tolist() == [True, True, False, True, False, False]


def test_lookups_do_not_rescan_the_set():
    """A guard on the algorithm, not the clock: a set of n keys is a few sorted runs, so a
    lookup is a binary search per run (a pass over the set per lookup made re-runs of a
    5,000,000-event hour take minutes per destination)."""
    seen = KeySet()
    for start in range(0, 1_000_000, 50_000):
        seen.add(keys_of([f"k{i}" for i in range(start, start + 50_000)]))
    assert seen.runs <= 20
    sizes = [len(a) for a, _ in seen._runs]
    assert sizes == sorted(sizes, reverse=True)
    for a, _ in seen._runs:
        assert np.all(a[:-1] <= a[1:])
