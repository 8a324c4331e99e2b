"""Cutting encoded events into requests within a partner's limits, a chunk at a time.

Events arrive as `Chunk`s: consecutive events of one event type and route, their ids an
Arrow string array and their wire JSON an Arrow binary array whose values each end with a
comma, so consecutive events are one slice of its data buffer. A `Batch` is one request's
worth: slices of chunks, in order. Cut points are found with a cumulative sum and a binary
search per batch, so nothing here loops over events in Python: the batches are exactly those
of the greedy rule "add events in order while the batch stays within the count and byte
limits", which a test checks against a per-event version. A batch's body is its chunks'
slices joined, never one object per event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from currents_relay.delivery import arrays


def encoded_events(events: Sequence[bytes]) -> pa.Array:
    """Encoded events as a binary array, each value followed by a comma."""
    sizes = np.fromiter(map(len, events), dtype=np.int64, count=len(events)) + 1
    return arrays.from_sizes(pa.large_binary(), sizes, b",".join(events) + b"," if events else b"")


def batch_id(runs: Iterable[tuple[str, pa.Array | Sequence[str]]]) -> str:
    """A digest of a batch's events, given as (event_type, ids) runs: names the request and
    feeds partner dedup keys (mParticle's `source_request_id`), so the same batch always gets
    the same id. It hashes `<event_type>\x1f<id>\x1e` per event, however the runs are cut."""
    digest = hashlib.blake2b(digest_size=12)  # updates in pieces: the digest of their join
    for event_type, ids in runs:
        if len(ids):
            array = ids.cast(pa.string()) if isinstance(ids, pa.Array) else arrays.strings(ids)
            head, tail, separator = arrays.strings([f"{event_type}\x1f", "\x1e", ""])
            digest.update(arrays.joined(pc.binary_join_element_wise(head, array, tail, separator)))
    return digest.hexdigest()


class Chunk(NamedTuple):
    """Consecutive events of one event type and route: their ids (a string array) and wire
    JSON (`encoded_events`)."""

    event_type: str
    ids: pa.Array
    encoded: pa.Array
    route: str = ""

    @classmethod
    def of(
        cls,
        event_type: str,
        ids: pa.Array | Sequence[str],
        events: Sequence[bytes],
        route: str = "",
    ) -> Chunk:
        ids = ids if isinstance(ids, pa.Array) else arrays.strings(ids)
        return cls(event_type, ids, encoded_events(events), route)

    def __len__(self) -> int:  # type: ignore[override]  # events, not fields
        return len(self.ids)

    def part(self, start: int, stop: int) -> Chunk:
        ids, encoded = self.ids.slice(start, stop - start), self.encoded.slice(start, stop - start)
        return Chunk(self.event_type, ids, encoded, self.route)

    def take(self, indices: list[int] | np.ndarray, route: str | None = None) -> Chunk:
        """The events at `indices`, in that order (their bytes copied), on `route` if given."""
        at = arrays.integers(indices)
        route = self.route if route is None else route
        return Chunk(self.event_type, self.ids.take(at), self.encoded.take(at), route)

    def sizes(self) -> np.ndarray:
        """Each event's bytes (without its comma)."""
        return np.diff(arrays.offsets(self.encoded)) - 1

    def events(self) -> list[bytes]:
        """Each event's JSON."""
        return [event[:-1] for event in self.encoded.to_pylist()]


@dataclass(frozen=True)
class Batch:
    """One request's events: parts of chunks, in order, all of one route."""

    parts: tuple[Chunk, ...]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def route(self) -> str:
        return self.parts[0].route

    def encoded_bytes(self) -> int:
        """The bytes of its events' JSON, a comma each."""
        return sum(len(arrays.joined(part.encoded)) for part in self.parts)

    def encoded(self) -> list[bytes]:
        """Each event's JSON (for bodies that regroup events)."""
        return [event for part in self.parts for event in part.events()]

    def body(self, head: bytes, tail: bytes) -> bytes:
        """`head`, the events joined with commas, `tail` (each part's events are one slice of
        its chunk's buffer)."""
        pieces = [head, *(arrays.joined(part.encoded) for part in self.parts)]
        pieces[-1] = pieces[-1][:-1]  # the last event's comma
        return b"".join([*pieces, tail])

    def runs(self) -> list[tuple[str, pa.Array]]:
        """(event_type, ids) runs, as the ledger records them."""
        return [(part.event_type, part.ids) for part in self.parts]

    def events(self) -> Iterator[tuple[str, str, bytes]]:
        """(event_type, id, encoded) per event (dead letters: a few events at a time)."""
        for part in self.parts:
            for event_id, encoded in zip(part.ids.to_pylist(), part.events(), strict=True):
                yield part.event_type, event_id, encoded

    def halves(self) -> tuple[Batch, Batch]:
        """The first half of the events and the rest (a batch of two or more events)."""
        middle = len(self) // 2
        first: list[Chunk] = []
        rest: list[Chunk] = []
        seen = 0
        for part in self.parts:
            if seen + len(part) <= middle:
                first.append(part)
            elif seen >= middle:
                rest.append(part)
            else:
                cut = middle - seen
                first.append(part.part(0, cut))
                rest.append(part.part(cut, len(part)))
            seen += len(part)
        return Batch(tuple(first)), Batch(tuple(rest))


@dataclass(frozen=True)
class Limits:
    """A request's limits: events, body bytes (beyond the body's own envelope), bytes each
    event adds beyond its JSON and a comma, and the largest event that can be sent at all."""

    max_events: int
    max_bytes: int
    event_overhead: int = 0
    max_event_bytes: int | None = None

    @property
    def event_limit(self) -> int:
        room = self.max_bytes - self.event_overhead
        return min(room, self.max_event_bytes or room)


class _Open:
    """The batch being filled for one route."""

    def __init__(self) -> None:
        self.parts: list[Chunk] = []
        self.events = 0
        self.size = 0

    def take(self) -> Batch:
        batch = Batch(tuple(self.parts))
        self.parts, self.events, self.size = [], 0, 0
        return batch


def cut_batches(
    chunks: Iterable[Chunk], limits: Limits, too_large: list[Chunk] | None = None
) -> Iterator[Batch]:
    """Batches of `chunks`' events, in order, within `limits`; one batch never mixes routes.

    Events larger than `limits.event_limit` are left out and appended (as one-event chunks) to
    `too_large`, for the caller to dead-letter.
    """
    opened: dict[str, _Open] = {}
    for chunk in chunks:
        if not len(chunk):
            continue
        lengths = chunk.sizes()
        if int(lengths.max()) > limits.event_limit:
            oversized = np.flatnonzero(lengths > limits.event_limit)
            if too_large is not None:
                too_large.extend(chunk.part(i, i + 1) for i in oversized.tolist())
            keep = np.flatnonzero(lengths <= limits.event_limit).tolist()
            if not keep:
                continue
            chunk = chunk.take(keep)
            lengths = lengths[keep]
        current = opened.setdefault(chunk.route, _Open())
        ends = np.cumsum(lengths + (limits.event_overhead + 1))  # bytes up to each event's end
        start, base = 0, 0  # base: bytes of this chunk already placed in earlier batches
        while start < len(chunk):
            room = limits.max_bytes - current.size + base
            fits = int(np.searchsorted(ends, room, side="right")) - start
            if not current.parts:  # an event within `event_limit` always goes, if alone
                fits = max(fits, 1)
            count = min(fits, limits.max_events - current.events, len(chunk) - start)
            if count <= 0:  # the open batch is full: send it, the next one starts empty
                yield current.take()
                continue
            stop = start + count
            current.parts.append(chunk.part(start, stop))
            current.events += count
            added = int(ends[stop - 1]) - base
            current.size += added
            base += added
            start = stop
            if current.events >= limits.max_events:
                yield current.take()
    for current in opened.values():
        if current.parts:
            yield current.take()
