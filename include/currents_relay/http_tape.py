"""The tape of a batch of Custom HTTP bodies (`http_scan`), and columns written from it.

`Tape.add` scans each body onto one growing tape (rows of event, section, key, value start
and end address, kind, integer value; the bodies kept alive here); `Tape.texts` writes
string columns straight from the spans with one compiled call (escapes decoded as orjson
decodes them); `Tape.value` and `Tape.event` parse one value or event with orjson, for the
few that need Python objects. `Keys` interns keys (and event types) for a whole ingest.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from numba import njit

from currents_relay.http_scan import (
    BACKSLASH,
    ESCAPED,
    ESCAPES,
    INTEGER,
    INVALID,
    KEY_BYTES,
    MAX_KEYS,
    NULL,
    NUMBER,
    OK,
    STRING,
    TAPE_COLUMNS,
    hex4,
    intern_array,
    scan,
)
from currents_relay.scan_kernel import byte_at, copy_into


@njit(cache=True, nogil=True)
def _unescape(address: int, end: int, out: np.ndarray, at: int) -> int:
    """The JSON string text at `address` up to `end` (no quotes), decoded as orjson decodes
    it, in UTF-8 at `out[at:]`; returns the end in `out`. Its escapes are valid: the scan
    accepts no other (an unknown escape, a surrogate out of its pair)."""
    while address < end:
        c = byte_at(address)
        if c != BACKSLASH:
            out[at] = c
            at += 1
            address += 1
            continue
        letter = byte_at(address + 1)
        if letter != 117:  # not a \u escape
            out[at] = ESCAPES[letter]
            at += 1
            address += 2
            continue
        code = hex4(address + 2, end)
        address += 6
        if 0xD800 <= code < 0xDC00:  # a high surrogate, and its low one
            code = 0x10000 + ((code - 0xD800) << 10) + (hex4(address + 2, end) - 0xDC00)
            address += 6
        if code < 0x80:
            out[at] = code
            at += 1
        elif code < 0x800:
            out[at], out[at + 1] = 0xC0 | (code >> 6), 0x80 | (code & 63)
            at += 2
        elif code < 0x10000:
            out[at], out[at + 1] = 0xE0 | (code >> 12), 0x80 | ((code >> 6) & 63)
            out[at + 2] = 0x80 | (code & 63)
            at += 3
        else:
            out[at], out[at + 1] = 0xF0 | (code >> 18), 0x80 | ((code >> 12) & 63)
            out[at + 2], out[at + 3] = 0x80 | ((code >> 6) & 63), 0x80 | (code & 63)
            at += 4
    return at


@njit(cache=True, nogil=True)
def _text_bytes(rows: np.ndarray, cells: np.ndarray, numbers: bool) -> int:
    """The bytes `_texts` writes at most for these cells; -1 if a value is not a string
    (or, with `numbers`, not a number)."""
    total = 0
    for c in range(cells.shape[0]):
        for r in range(cells.shape[1]):
            row = cells[c, r]
            if row < 0 or rows[row, 5] == NULL:
                continue
            kind = rows[row, 5]
            if numbers and (kind in (INTEGER, NUMBER)):
                total += rows[row, 4] - rows[row, 3]
            elif not numbers and (kind in (STRING, ESCAPED)):
                total += rows[row, 4] - rows[row, 3] - 2
            else:
                return -1
    return total


@njit(cache=True, nogil=True)
def _texts(
    rows: np.ndarray,
    cells: np.ndarray,
    out: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    longest: np.ndarray,
) -> None:
    """Columns of texts as Arrow keeps strings: for each row of `cells` (tape rows, -1: a
    null), the values one after the other in `out`, `offsets[c]` into it, `valid[c]` and
    the most bytes of one value in `longest[c]`. Strings are written without their quotes,
    escapes decoded as orjson decodes them; numbers as they are."""
    at = 0
    for c in range(cells.shape[0]):
        offsets[c, 0] = at
        most = 0
        for r in range(cells.shape[1]):
            row = cells[c, r]
            kind = rows[row, 5] if row >= 0 else NULL
            start, stop = rows[row, 3], rows[row, 4]
            if kind == STRING:
                copy_into(out, at, start + 1, stop - start - 2)
                at += stop - start - 2
            elif kind == ESCAPED:
                at = _unescape(start + 1, stop - 1, out, at)
            elif kind in (INTEGER, NUMBER):
                copy_into(out, at, start, stop - start)
                at += stop - start
            valid[c, r] = kind != NULL
            most = max(most, at - offsets[c, r])
            offsets[c, r + 1] = at
        longest[c] = most


class Keys:
    """The keys (and event types) an ingest has met, one id each, shared by every body it
    scans: `USER_KEY`, `PROPERTIES_KEY` and `EVENT_TYPE_KEY` first."""

    def __init__(self, capacity: int = MAX_KEYS) -> None:
        if capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of 2, got {capacity}")
        self.table = np.full(2 * capacity, -1, dtype=np.int64)
        self.key_bytes = np.empty(KEY_BYTES, dtype=np.uint8)
        # counts, then spans of keys, then the number of objects scanned
        self.keys = np.zeros(2 + 2 * capacity + 1, dtype=np.int64)
        self.stamps = np.zeros(capacity, dtype=np.int64)  # per key: the last object it was in
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        for name in (b"user", b"properties", b"event_type"):
            intern_array(np.frombuffer(name, dtype=np.uint8), self.table, self.key_bytes, self.keys)

    def names(self) -> list[str]:
        """Key id -> the key."""
        while len(self._names) < self.keys[0]:
            i = len(self._names)
            first, last = self.keys[2 + 2 * i], self.keys[3 + 2 * i]
            self._names.append(self.key_bytes[first:last].tobytes().decode())
            self._ids[self._names[-1]] = i
        return self._names

    def id_of(self, name: str) -> int:
        """The id of a key met so far; -1 if none."""
        self.names()
        return self._ids.get(name, -1)


@dataclass(frozen=True)
class Scan:
    """A body on the tape: its bytes and how many events it holds."""

    body: bytes
    events: int


class Tape:
    """Bodies scanned one after the other onto one tape (grown as needed, kept between
    batches): their events numbered in order, every span an address in a body kept alive
    here. `clear` starts the next batch."""

    def __init__(self, keys: Keys, rows: int = 1 << 14, events: int = 1 << 10) -> None:
        self.keys = keys
        self._rows = np.empty((rows, TAPE_COLUMNS), dtype=np.int64)
        self._events = np.empty((events, 2), dtype=np.int64)
        self._row_count = self._event_count = 0
        self._bodies: list[bytes] = []

    @property
    def rows(self) -> np.ndarray:
        """Rows of (event, section, key, value start, value end, kind, integer value)."""
        return self._rows[: self._row_count]

    @property
    def events(self) -> np.ndarray:
        """Rows of (start, end) of each event."""
        return self._events[: self._event_count]

    def add(self, body: bytes) -> Scan | None:
        """Scan a body onto the tape; None (and the tape as it was) when it is not plainly
        `{"events": [...]}` of valid UTF-8 JSON: the caller then reads it with orjson."""
        if not body.isascii():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        data = np.frombuffer(body, dtype=np.uint8)
        keys = self.keys
        while True:
            status, events, rows = scan(
                data,
                self._rows,
                self._events,
                self._row_count,
                self._event_count,
                keys.table,
                keys.key_bytes,
                keys.keys,
                keys.stamps,
            )
            if status == INVALID:
                return None
            if status == OK:
                self._bodies.append(body)
                scanned = Scan(body, events - self._event_count)
                self._event_count, self._row_count = events, rows
                return scanned
            # A member takes 6 bytes at least (`"k":1,`) and an event 3 (`{},`).
            self._rows = _grown(self._rows, self._row_count + len(body) // 5 + 16)
            self._events = _grown(self._events, self._event_count + len(body) // 2 + 16)

    def clear(self) -> None:
        self._row_count = self._event_count = 0
        self._bodies = []

    def __len__(self) -> int:
        return len(self.events)

    def event(self, index: int) -> Any:
        """Event `index`, parsed."""
        start, stop = self.events[index]
        return orjson.loads(ctypes.string_at(int(start), int(stop - start)))

    def value(self, row: int) -> Any:
        """The value of tape row `row`, parsed."""
        start, stop = self.rows[row, 3:5]
        return orjson.loads(ctypes.string_at(int(start), int(stop - start)))

    def texts(
        self, cells: np.ndarray, numbers: bool = False
    ) -> tuple[list[pa.Array], np.ndarray] | None:
        """String arrays of the values at the tape rows of each row of `cells` (-1: null),
        written by one compiled call into one buffer (strings decoded, or with `numbers`
        numbers as their JSON text), and each array's most bytes in one value. None if a
        value is of another kind."""
        columns, n = cells.shape
        size = _text_bytes(self.rows, cells, numbers)
        if size < 0:
            return None
        out = np.empty(size, dtype=np.uint8)
        offsets = np.empty((columns, n + 1), dtype=np.int32)
        valid = np.empty((columns, n), dtype=np.bool_)
        longest = np.zeros(columns, dtype=np.int64)
        _texts(self.rows, cells, out, offsets, valid, longest)
        data = pa.py_buffer(out)
        bitmaps = np.packbits(valid, axis=1, bitorder="little")
        nulls = n - valid.sum(axis=1)
        arrays = [
            pa.StringArray.from_buffers(
                n,
                pa.py_buffer(offsets[c]),
                data,
                pa.py_buffer(bitmaps[c]) if nulls[c] else None,
                int(nulls[c]),
            )
            for c in range(columns)
        ]
        return arrays, longest


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with room for `rows` rows at least (twice as many as it had, or more)."""
    if rows <= len(array):
        return array
    grown = np.empty((max(rows, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
