"""Batches cut a chunk at a time are exactly those of the greedy per-event rule."""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa
import pytest

from currents_relay.delivery.batching import Batch, Chunk, Limits, batch_id, cut_batches


def greedy(events: list[tuple[str, str, bytes, str]], limits: Limits):
    """The rule, one event at a time: (event_type, id, encoded, route) -> batches, too large."""
    open_batches: dict[str, tuple[list, int]] = {}
    done, too_large = [], []
    for event in events:
        encoded, route = event[2], event[3]
        if len(encoded) > limits.event_limit:
            too_large.append(event)
            continue
        n = len(encoded) + limits.event_overhead + 1
        current, size = open_batches.get(route, ([], 0))
        if current and (len(current) >= limits.max_events or size + n > limits.max_bytes):
            done.append(current)
            current, size = [], 0
        current.append(event)
        open_batches[route] = (current, size + n)
    done.extend(current for current, _ in open_batches.values() if current)
    return done, too_large


def flat(batch: Batch) -> list[tuple[str, str, bytes, str]]:
    return [(t, i, e, batch.route) for t, i, e in batch.events()]


def random_chunks(rng: random.Random, routes: int) -> list[Chunk]:
    chunks = []
    for c in range(rng.randint(1, 40)):
        event_type = f"type-{c % 3}"
        route = f"route-{rng.randrange(routes)}"
        n = rng.choice([0, 1, 2, 7, 50, 300])
        ids = [f"{c}-{i}" for i in range(n)]
        sizes = [rng.choice([5, 40, 90, 200, 700, 1_500]) for _ in range(n)]
        events = [i.encode().ljust(s, b"x") for i, s in zip(ids, sizes, strict=True)]
        chunks.append(Chunk.of(event_type, ids, events, route))
    return chunks


@pytest.mark.parametrize("seed", range(40))
def test_chunked_batches_equal_the_per_event_rule(seed):
    rng = random.Random(seed)
    limits = Limits(
        max_events=rng.choice([1, 3, 100, 10_000]),
        max_bytes=rng.choice([1_000, 2_000, 20_000]),
        event_overhead=rng.choice([0, 120]),
        max_event_bytes=rng.choice([None, 600]),
    )
    chunks = random_chunks(rng, routes=rng.choice([1, 3]))
    events = [
        (c.event_type, i, e, c.route)
        for c in chunks
        for i, e in zip(c.ids.to_pylist(), c.events(), strict=True)
    ]
    expected, expected_too_large = greedy(events, limits)
    too_large: list[Chunk] = []
    batches = list(cut_batches(chunks, limits, too_large))
    assert sorted(map(flat, batches)) == sorted(expected)  # routes interleave in any order
    for batch in batches:  # a body is its events joined, from the chunks' buffers
        assert bytes(batch.body(b"[", b"]")) == b"[" + b",".join(batch.encoded()) + b"]"
        assert batch.encoded_bytes() == sum(len(e) + 1 for e in batch.encoded())
    assert [(c.event_type, c.ids[0].as_py(), c.events()[0], c.route) for c in too_large] == (
        expected_too_large
    )
    for batch in batches:  # and every batch is within the limits
        assert 1 <= len(batch) <= limits.max_events
        size = sum(len(e) + limits.event_overhead + 1 for e in batch.encoded())
        assert size <= limits.max_bytes or len(batch) == 1


def test_an_event_at_the_byte_limit_goes_alone():
    limits = Limits(max_events=10, max_bytes=100)
    chunk = Chunk.of("t", ["a", "b", "c"], [b"x" * 100, b"y" * 10, b"z" * 100])
    assert [len(b) for b in cut_batches([chunk], limits)] == [1, 1, 1]


@pytest.mark.parametrize("sizes", [[1, 1], [3, 4, 1], [2, 2, 2, 2, 2], [1, 6]])
def test_halves_split_at_the_middle_event(sizes):
    parts = tuple(
        Chunk.of(f"t{p}", [f"{p}-{i}" for i in range(n)], [b"{}"] * n) for p, n in enumerate(sizes)
    )
    batch = Batch(parts)
    first, rest = batch.halves()
    assert len(first) == len(batch) // 2 and len(first) + len(rest) == len(batch)
    assert list(first.events()) + list(rest.events()) == list(batch.events())


def test_chunks_slice_and_take_without_losing_bytes():
    events = [b'{"a":1}', b"", b'"x,y"', b"[" * 300]
    chunk = Chunk.of("t", ["a", "b", "c", "d"], events)
    assert chunk.events() == events and chunk.sizes().tolist() == list(map(len, events))
    assert chunk.part(1, 3).events() == events[1:3]
    assert Batch((chunk.part(1, 4),)).body(b"[", b"]") == b"[" + b",".join(events[1:4]) + b"]"
    assert chunk.take([3, 0, 2]).events() == [events[3], events[0], events[2]]
    assert chunk.part(1, 4).take([2, 0]).events() == [events[3], events[1]]
    assert chunk.part(1, 4).take([2, 0]).ids.to_pylist() == ["d", "b"]
    assert len(Chunk.of("t", [], [])) == 0 and len(chunk.take([])) == 0


def test_batch_id_hashes_each_event_however_the_runs_are_cut():
    pairs = [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")]
    text = "".join(f"{t}\x1f{i}\x1e" for t, i in pairs)  # the digest batch ids have always had
    expected = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    assert batch_id([("a", ["1", "2"]), ("b", ["3"]), ("a", ["4"])]) == expected
    assert batch_id([("a", ["1"]), ("a", ["2"]), ("a", []), ("b", ["3"]), ("a", ["4"])]) == (
        expected
    )
    assert batch_id([("a", ["1", "2"]), ("b", ["3"])]) != expected


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_batch_id_of_arrow_ids_equals_the_one_of_their_strings(kind):
    ids = [f"id-{i}" for i in range(7)] + ["é\x1f"]
    read = pa.array(["x", *ids], kind).slice(1)  # an offset into the buffers
    runs = [("a", read.slice(0, 3)), ("a", read.slice(3, 8))]
    assert batch_id(runs) == batch_id([("a", ids)])
