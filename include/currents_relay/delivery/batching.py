"""Cutting encoded events into requests within a partner's limits, a chunk at a time.

Events arrive as `Chunk`s (consecutive events of one event type and route, already encoded,
back to back in one buffer); a `Batch` is one request's worth: slices of chunks, in order.
Cut points are found with a cumulative sum and a binary search per batch, so nothing here
loops over events in Python: the batches are exactly those of the greedy rule "add events in
order while the batch stays within the count and byte limits", which a test checks against a
per-event version. A batch's body is its chunks' slices joined, never one object per event,
and its events' ids stay as Arrow keeps them (`Ids`) from the lake to the ledger.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa


def _gathered(
    buffer: memoryview, bounds: np.ndarray, indices: list[int] | np.ndarray
) -> tuple[bytes, np.ndarray]:
    """The slices `buffer[bounds[i]:bounds[i + 1]]` at `indices`, in that order, joined into
    a buffer of their own, and their bounds there."""
    at = np.asarray(indices, dtype=np.int64)
    starts, stops = bounds[at].tolist(), bounds[at + 1].tolist()
    gathered = np.zeros(len(at) + 1, dtype=np.int64)
    np.cumsum(bounds[at + 1] - bounds[at], out=gathered[1:])
    return b"".join(buffer[a:b] for a, b in zip(starts, stops, strict=True)), gathered


class Encoded:
    """Encoded events back to back, each followed by a comma: event i is
    `buffer[bounds[i]:bounds[i + 1] - 1]`, so consecutive events are one slice."""

    __slots__ = ("bounds", "buffer")

    def __init__(self, buffer: np.ndarray | bytes, bounds: np.ndarray) -> None:
        self.buffer = memoryview(buffer).cast("B")
        self.bounds = bounds

    @classmethod
    def of(cls, events: Sequence[bytes]) -> Encoded:
        sizes = np.fromiter(map(len, events), dtype=np.int64, count=len(events))
        bounds = np.zeros(len(events) + 1, dtype=np.int64)
        np.cumsum(sizes + 1, out=bounds[1:])
        return cls(b",".join(events) + b"," if events else b"", bounds)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, index: int) -> bytes:
        return bytes(self.buffer[self.bounds[index] : self.bounds[index + 1] - 1])

    def __iter__(self) -> Iterator[bytes]:
        for index in range(len(self)):
            yield self[index]

    def slice(self, start: int, stop: int) -> Encoded:
        return Encoded(self.buffer, self.bounds[start : stop + 1])

    def take(self, indices: list[int] | np.ndarray) -> Encoded:
        """The events at `indices`, in that order, in a buffer of their own."""
        return Encoded(*_gathered(self.buffer, self.bounds, indices))  # with their commas

    def sizes(self) -> np.ndarray:
        """Each event's bytes (without its comma)."""
        return np.diff(self.bounds) - 1

    def joined(self) -> memoryview:
        """The events joined with commas (no copy)."""
        return self.buffer[self.bounds[0] : self.bounds[-1] - 1]


class Ids:
    """Event ids back to back, as an Arrow string array holds them: id i is
    `data[offsets[i]:offsets[i + 1]]` (UTF-8), so a run of ids is one slice and the ledger
    records a batch's ids without a Python string per event."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: np.ndarray | bytes | memoryview, offsets: np.ndarray) -> None:
        self.data = memoryview(data).cast("B")
        self.offsets = offsets

    @classmethod
    def of(cls, ids: Sequence[str]) -> Ids:
        encoded = [event_id.encode() for event_id in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    @classmethod
    def from_arrow(cls, array: pa.Array) -> Ids:
        """The ids of a string or large string array (read in place, no copy)."""
        if array.null_count:
            raise ValueError(f"{array.null_count} event(s) without an id")
        if pa.types.is_large_string(array.type):
            width = np.int64
        elif pa.types.is_string(array.type):
            width = np.int32
        else:
            raise TypeError(f"ids of type {array.type}: expected a string array")
        _, offsets, data = array.buffers()
        bounds = np.frombuffer(offsets, dtype=width)[array.offset : array.offset + len(array) + 1]
        return cls(data if data is not None else b"", bounds.astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        return bytes(self.data[self.offsets[index] : self.offsets[index + 1]]).decode()

    def __iter__(self) -> Iterator[str]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        return f"Ids({list(self)!r})"

    def slice(self, start: int, stop: int) -> Ids:
        return Ids(self.data, self.offsets[start : stop + 1])

    def take(self, indices: list[int] | np.ndarray) -> Ids:
        """The ids at `indices`, in that order, in a buffer of their own."""
        return Ids(*_gathered(self.data, self.offsets, indices))

    def to_arrow(self) -> pa.StringArray:
        """A string array of the ids (one copy of their bytes)."""
        first, last = int(self.offsets[0]), int(self.offsets[-1])
        offsets = (self.offsets - first).astype(np.int32)
        data = pa.py_buffer(bytes(self.data[first:last]))
        return pa.StringArray.from_buffers(len(self), pa.py_buffer(offsets), data)

    def keyed(self, event_type: str) -> bytes:
        """`<event_type>\x1f<id>\x1e` for each id, one after the other (what batch ids hash)."""
        head = f"{event_type}\x1f".encode()
        bounds = self.offsets.tolist()
        data = self.data
        return b"".join(head + data[a:b] + b"\x1e" for a, b in itertools.pairwise(bounds))


def batch_id(runs: Iterable[tuple[str, Ids | Sequence[str]]]) -> str:
    """A digest of a batch's events, given as (event_type, ids) runs: names the request and
    feeds partner dedup keys (mParticle's `source_request_id`), so the same batch always gets
    the same id. It hashes `<event_type>\x1f<id>\x1e` per event, however the runs are cut."""
    digest = hashlib.blake2b(digest_size=12)  # updates in pieces: the digest of their join
    for event_type, ids in runs:
        if len(ids):
            digest.update((ids if isinstance(ids, Ids) else Ids.of(ids)).keyed(event_type))
    return digest.hexdigest()


class Chunk(NamedTuple):
    """Consecutive events of one event type and route, each encoded as its wire JSON."""

    event_type: str
    ids: Ids
    encoded: Encoded
    route: str = ""

    def __len__(self) -> int:  # type: ignore[override]  # events, not fields
        return len(self.ids)

    def part(self, start: int, stop: int) -> Chunk:
        return Chunk(
            self.event_type,
            self.ids.slice(start, stop),
            self.encoded.slice(start, stop),
            self.route,
        )

    def take(self, indices: list[int]) -> Chunk:
        """The events at `indices`, in that order (their bytes copied)."""
        return Chunk(
            self.event_type, self.ids.take(indices), self.encoded.take(indices), self.route
        )


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
        return sum(int(part.encoded.bounds[-1] - part.encoded.bounds[0]) for part in self.parts)

    def encoded(self) -> list[bytes]:
        """Each event's JSON (for bodies that regroup events)."""
        return [event for part in self.parts for event in part.encoded]

    def body(self, head: bytes, tail: bytes) -> bytes:
        """`head`, the events joined with commas, `tail` (each part's events are one slice of
        its chunk's buffer)."""
        pieces: list[bytes | memoryview] = [head]
        for part in self.parts:
            pieces += (part.encoded.joined(), b",")
        pieces[-1] = tail
        return b"".join(pieces)

    def runs(self) -> list[tuple[str, Ids]]:
        """(event_type, ids) runs, as the ledger records them."""
        return [(part.event_type, part.ids) for part in self.parts]

    def events(self) -> Iterator[tuple[str, str, bytes]]:
        """(event_type, id, encoded) per event (dead letters: a few events at a time)."""
        for part in self.parts:
            for event_id, encoded in zip(part.ids, part.encoded, strict=True):
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
        lengths = chunk.encoded.sizes()
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
