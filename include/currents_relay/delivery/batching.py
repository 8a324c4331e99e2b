"""Cutting encoded events into requests within a partner's limits, a chunk at a time.

Events arrive as `Chunk`s (consecutive events of one event type and route, already encoded);
a `Batch` is one request's worth: slices of chunks, in order. Cut points are found with a
cumulative sum and a binary search per batch, so nothing here loops over events in Python:
the batches are exactly those of the greedy rule "add events in order while the batch stays
within the count and byte limits", which a test checks against a per-event version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Chunk(NamedTuple):
    """Consecutive events of one event type and route, each encoded as its wire JSON."""

    event_type: str
    ids: list[str]
    encoded: list[bytes]
    route: str = ""

    def __len__(self) -> int:  # type: ignore[override]  # events, not fields
        return len(self.ids)

    def part(self, start: int, stop: int) -> Chunk:
        return Chunk(self.event_type, self.ids[start:stop], self.encoded[start:stop], self.route)


@dataclass(frozen=True)
class Batch:
    """One request's events: parts of chunks, in order, all of one route."""

    parts: tuple[Chunk, ...]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def route(self) -> str:
        return self.parts[0].route

    def encoded(self) -> list[bytes]:
        events: list[bytes] = []
        for part in self.parts:
            events.extend(part.encoded)
        return events

    def runs(self) -> list[tuple[str, list[str]]]:
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
        lengths = np.fromiter(map(len, chunk.encoded), dtype=np.int64, count=len(chunk))
        if int(lengths.max()) > limits.event_limit:
            oversized = np.flatnonzero(lengths > limits.event_limit)
            if too_large is not None:
                too_large.extend(chunk.part(i, i + 1) for i in oversized.tolist())
            keep = np.flatnonzero(lengths <= limits.event_limit).tolist()
            chunk = Chunk(
                chunk.event_type,
                [chunk.ids[i] for i in keep],
                [chunk.encoded[i] for i in keep],
                chunk.route,
            )
            lengths = lengths[keep]
            if not keep:
                continue
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
