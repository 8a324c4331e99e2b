"""Custom HTTP bodies read in one compiled pass, without a Python object per value.

A body `{"events": [{...}, ...]}` is scanned into a *tape*: each event's byte span, and one
entry per member of an event, of its `user` object or of its `properties` object (section
0, 1 or 2), with its key (interned: one id per distinct key, for the whole ingest), the span
and kind of its value, and for integers their value. Nested values are not opened: they are
spanned, and whoever needs them parses their bytes with orjson (`http_batch` only does so
for values the catalogue keeps as JSON, lists, and events with unknown fields). String
columns are then built straight from the spans (`Tape.texts`), escapes decoded as orjson
decodes them.

The scan is strict: anything outside the plain shape (a body key other than `events`, a key
with an escape, a `user` that is not an object, nesting deeper than `MAX_DEPTH`, JSON that is
not valid where the scan reads it) makes it give up, and the caller reads the body with
orjson as before, so the result never depends on which path read it. Non-UTF-8 bodies are
refused before the scan.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from currents_relay.delivery.json_kernel import _byte_at, _copy, _int64_at, _pointer, _reader

# Value kinds on the tape.
STRING, ESCAPED, INTEGER, NUMBER, TRUE, FALSE, NULL, OBJECT, ARRAY = range(9)
TOP, USER, PROPERTIES = 0, 1, 2  # sections: the event itself, its `user`, its `properties`
OK, INVALID, FULL = 0, 1, 2  # scan outcomes: done; give up (read it with orjson); grow
MAX_DEPTH = 64
MAX_KEYS = 4_096  # distinct keys an ingest interns (a hash table twice as large)
KEY_BYTES = 1 << 18
TAPE_COLUMNS = 7  # event, section, key, value start, value end, kind, integer
# What the compiled helpers share, as int64s at one address (`state`): the key table's
# addresses and sizes, the stack of open brackets, the tape's address and rows.
TABLE, SLOTS, KEY_BYTES_AT, KEYS_AT, STAMPS, STACK, SERIAL, TAPE, TAPE_ROWS = range(9)
STATE = 9
INTEGER_DIGITS = 18  # integers this long or shorter are read here (they fit int64)
QUOTE, BACKSLASH, LBRACE, RBRACE, LBRACKET, RBRACKET = 34, 92, 123, 125, 91, 93
COMMA, COLON, MINUS, PLUS, DOT, ZERO, NINE = 44, 58, 45, 43, 46, 48, 57
USER_KEY, PROPERTIES_KEY, EVENT_TYPE_KEY = 0, 1, 2  # the ids `Keys` gives these keys first
_ESCAPES = np.zeros(128, dtype=np.uint8)  # `\x` -> the byte it stands for (0: invalid)
for _letter, _byte in (
    ('"', 34),
    ("\\", 92),
    ("/", 47),
    ("b", 8),
    ("f", 12),
    ("n", 10),
    ("r", 13),
    ("t", 9),
):
    _ESCAPES[ord(_letter)] = _byte


def _store(bits: int):  # type: ignore[no-untyped-def]
    """An intrinsic storing an int64 at an address as a `bits`-bit integer (unaligned)."""

    @intrinsic
    def store(typingctx, address, value):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            narrow = builder.trunc(args[1], ir.IntType(bits)) if bits < 64 else args[1]
            builder.store(narrow, _pointer(builder, args[0], bits), align=1)
            return context.get_dummy_value()

        return types.none(address, value), codegen

    return store


_put8, _put64 = _store(8), _store(64)
_u32_at = _reader(32, "zero", types.int64)
_u16_at = _reader(16, "zero", types.int64)
TRUE_WORD, NULL_WORD, FALS_WORD = (int.from_bytes(w, "little") for w in (b"true", b"null", b"fals"))
EVENTS_WORD = int.from_bytes(b'"events"', "little")

# Below, the body and every table are read and written through addresses (ints), not
# arrays: numba counts references to each array passed to a function, which cost more
# than the scanning itself.


@njit(cache=True, nogil=True)
def _space(at: int, end: int) -> int:
    while at < end:
        c = _byte_at(at)
        if c != 32 and c != 10 and c != 13 and c != 9:
            return at
        at += 1
    return at


@njit(cache=True, nogil=True)
def _hex4(at: int, end: int) -> int:
    """The 4 hex digits at `at` as a number; -1 if they are not 4 hex digits."""
    if at + 4 > end:
        return -1
    value = 0
    for i in range(at, at + 4):
        c = _byte_at(i)
        if ZERO <= c <= NINE:
            digit = c - ZERO
        elif 97 <= c <= 102:
            digit = c - 87
        elif 65 <= c <= 70:
            digit = c - 55
        else:
            return -1
        value = value * 16 + digit
    return value


@njit(cache=True, nogil=True)
def _string_end(at: int, end: int) -> tuple[int, bool]:
    """(address of the closing quote, whether it holds an escape) of the string opening at
    `at`; (-1, False) if it does not close, holds a raw control byte or an escape orjson
    refuses (an unknown one, a surrogate out of its pair)."""
    at += 1
    escaped = False
    while at < end:
        c = _byte_at(at)
        if c == QUOTE:
            return at, escaped
        if c < 32:
            return -1, False
        if c != BACKSLASH:
            at += 1
            continue
        escaped = True
        if at + 1 >= end:
            return -1, False
        letter = _byte_at(at + 1)
        if letter != 117:  # not \u
            if letter >= 128 or _ESCAPES[letter] == 0:
                return -1, False
            at += 2
            continue
        code = _hex4(at + 2, end)
        at += 6
        if code < 0 or 0xDC00 <= code < 0xE000:
            return -1, False
        if 0xD800 <= code < 0xDC00:  # a high surrogate: a low one must follow
            if at + 1 >= end or _byte_at(at) != BACKSLASH or _byte_at(at + 1) != 117:
                return -1, False
            low = _hex4(at + 2, end)
            if low < 0xDC00 or low >= 0xE000:
                return -1, False
            at += 6
    return -1, False


@njit(cache=True, nogil=True)
def _digits(at: int, end: int) -> int:
    while at < end and ZERO <= _byte_at(at) <= NINE:
        at += 1
    return at


@njit(cache=True, nogil=True)
def _number_end(at: int, end: int) -> tuple[int, bool]:
    """(end of the JSON number at `at`, whether it is an integer); (-1, False) if invalid."""
    if at < end and _byte_at(at) == MINUS:
        at += 1
    if at >= end:
        return -1, False
    c = _byte_at(at)
    if c == ZERO:
        at += 1
    elif ZERO < c <= NINE:
        at = _digits(at, end)
    else:
        return -1, False
    integral = True
    if at < end and _byte_at(at) == DOT:
        stop = _digits(at + 1, end)
        if stop == at + 1:
            return -1, False
        at, integral = stop, False
    if at < end and (_byte_at(at) == 101 or _byte_at(at) == 69):  # e, E
        at += 1
        if at < end and (_byte_at(at) == PLUS or _byte_at(at) == MINUS):
            at += 1
        stop = _digits(at, end)
        if stop == at:
            return -1, False
        at, integral = stop, False
    return at, integral


@njit(cache=True, nogil=True)
def _word_end(at: int, end: int) -> tuple[int, int]:
    """(kind, end) of `true`, `false` or `null` at `at`; kind -1 if none of them."""
    if at + 4 > end:
        return -1, at
    word = _u32_at(at)
    if word == TRUE_WORD:
        return TRUE, at + 4
    if word == NULL_WORD:
        return NULL, at + 4
    if word == FALS_WORD and at + 5 <= end and _byte_at(at + 4) == 101:
        return FALSE, at + 5
    return -1, at


@njit(cache=True, nogil=True)
def _scalar_end(at: int, end: int) -> int:
    """The end of the string, number or word at `at`; -1 if it is none (or invalid)."""
    c = _byte_at(at)
    if c == QUOTE:
        close, _ = _string_end(at, end)
        return close + 1 if close >= 0 else -1
    if c == MINUS or ZERO <= c <= NINE:
        stop, _ = _number_end(at, end)
        return stop
    kind, stop = _word_end(at, end)
    return stop if kind >= 0 else -1


@njit(cache=True, nogil=True)
def _member_value(at: int, end: int) -> int:
    """After an object's `{` or `,` (and spaces): the address of the member's value, past
    `"key":`; -1 if there is no such key."""
    if at >= end or _byte_at(at) != QUOTE:
        return -1
    close, _ = _string_end(at, end)
    at = _space(close + 1, end) if close >= 0 else end
    if at >= end or _byte_at(at) != COLON:
        return -1
    at = _space(at + 1, end)
    return at if at < end else -1


@njit(cache=True, nogil=True)
def _nested_end(at: int, end: int, stack: int) -> int:
    """The end of the object or array at `at`, checked as JSON all through (`stack`: room
    for `MAX_DEPTH` open brackets); -1 if it is not valid JSON or nests deeper."""
    depth = 0
    while True:  # at the start of a value
        c = _byte_at(at)
        if c in (LBRACE, LBRACKET):
            if depth == MAX_DEPTH:
                return -1
            _put8(stack + depth, c)
            depth += 1
            at = _space(at + 1, end)
            if at >= end:
                return -1
            if _byte_at(at) == c + 2:  # `}` and `]` follow `{` and `[` by 2
                at += 1
                depth -= 1
            elif c == LBRACE:
                at = _member_value(at, end)
                if at < 0:
                    return -1
                continue
            else:
                continue
        else:
            at = _scalar_end(at, end)
            if at < 0:
                return -1
        while True:  # after a value: close what ends here, or go on to the next one
            if depth == 0:
                return at
            at = _space(at, end)
            if at >= end:
                return -1
            c = _byte_at(at)
            opened = _byte_at(stack + depth - 1)
            if c == opened + 2:
                at += 1
                depth -= 1
                continue
            if c != COMMA:
                return -1
            at = _space(at + 1, end)
            if at >= end:
                return -1
            if opened == LBRACE:
                at = _member_value(at, end)
                if at < 0:
                    return -1
            break


@njit(cache=True, nogil=True)
def _intern(start: int, stop: int, table: int, slots: int, key_bytes: int, keys: int) -> int:
    """The id of the key at `start` to `stop` (FNV-1a, open addressing over `slots` int64
    slots, bytes compared); -1 when the table is full. `keys` holds int64s: the number of
    keys, the bytes they hold (of `KEY_BYTES`), then each key's start and stop there."""
    h = np.uint64(14695981039346656037)
    for i in range(start, stop):
        h = (h ^ np.uint64(_byte_at(i))) * np.uint64(1099511628211)
    slot = np.int64(h & np.uint64(slots - 1))
    size = stop - start
    while True:
        found = _int64_at(table + 8 * slot)
        if found < 0:
            break
        first = _int64_at(keys + 8 * (2 + 2 * found))
        if _int64_at(keys + 8 * (3 + 2 * found)) - first == size:
            same = True
            for i in range(size):
                if _byte_at(key_bytes + first + i) != _byte_at(start + i):
                    same = False
                    break
            if same:
                return found
        slot = (slot + 1) & (slots - 1)
    count, used = _int64_at(keys), _int64_at(keys + 8)
    if 2 * (count + 1) > slots or used + size > KEY_BYTES:
        return -1
    for i in range(size):
        _put8(key_bytes + used + i, _byte_at(start + i))
    _put64(keys + 8 * (2 + 2 * count), used)
    _put64(keys + 8 * (3 + 2 * count), used + size)
    _put64(keys, count + 1)
    _put64(keys + 8, used + size)
    _put64(table + 8 * slot, count)
    return count


@njit(cache=True, nogil=True)
def _intern_array(
    name: np.ndarray, table: np.ndarray, key_bytes: np.ndarray, keys: np.ndarray
) -> int:
    start = np.int64(name.ctypes.data)
    return _intern(
        start,
        start + name.shape[0],
        table.ctypes.data,
        table.shape[0],
        key_bytes.ctypes.data,
        keys.ctypes.data,
    )


@njit(cache=True, nogil=True)
def _integer(start: int, stop: int) -> int:
    negative = _byte_at(start) == MINUS
    value = 0
    for i in range(start + 1 if negative else start, stop):
        value = value * 10 + (_byte_at(i) - ZERO)
    return -value if negative else value


@njit(cache=True, nogil=True)
def _value(at: int, end: int, state: int) -> tuple[int, int, int]:
    """(kind, end, integer value or 0) of the JSON value at `at`; kind -1 if invalid."""
    c = _byte_at(at)
    if c == QUOTE:
        close, escaped = _string_end(at, end)
        if close < 0:
            return -1, at, 0
        return (ESCAPED if escaped else STRING), close + 1, 0
    if c in (LBRACE, LBRACKET):
        stop = _nested_end(at, end, _int64_at(state + 8 * STACK))
        return (OBJECT if c == LBRACE else ARRAY) if stop >= 0 else -1, stop, 0
    if c == MINUS or ZERO <= c <= NINE:
        stop, integral = _number_end(at, end)
        if stop < 0:
            return -1, stop, 0
        if integral and stop - at - (1 if c == MINUS else 0) <= INTEGER_DIGITS:
            return INTEGER, stop, _integer(at, stop)
        return NUMBER, stop, 0
    kind, stop = _word_end(at, end)
    return kind, stop, 0


@njit(cache=True, nogil=True)
def _key(at: int, end: int, state: int, serial: int) -> tuple[int, int]:
    """(key id, the address of its value) of the member at `at` of object number `serial`;
    id -1 if it is not `"key":` without escapes, a key met before in the same object, or
    one too many to intern."""
    if at >= end or _byte_at(at) != QUOTE:
        return -1, at
    close, escaped = _string_end(at, end)
    if close < 0 or escaped:
        return -1, at
    table, slots, key_bytes, keys = _tables(state)
    key = _intern(at + 1, close, table, slots, key_bytes, keys)
    stamps = _int64_at(state + 8 * STAMPS)
    if key < 0 or _int64_at(stamps + 8 * key) == serial:  # twice: orjson decides
        return -1, at
    _put64(stamps + 8 * key, serial)
    at = _space(close + 1, end)
    if at >= end or _byte_at(at) != COLON:
        return -1, at
    at = _space(at + 1, end)
    return (key, at) if at < end else (-1, at)


@njit(cache=True, nogil=True)
def _tables(state: int) -> tuple[int, int, int, int]:
    return (
        _int64_at(state + 8 * TABLE),
        _int64_at(state + 8 * SLOTS),
        _int64_at(state + 8 * KEY_BYTES_AT),
        _int64_at(state + 8 * KEYS_AT),
    )


@njit(cache=True, nogil=True)
def _next(at: int, end: int) -> tuple[int, int]:
    """After a member: (OK, the next member's address), (-1, after the object's `}`) or
    (INVALID, at)."""
    at = _space(at, end)
    if at < end and _byte_at(at) == RBRACE:
        return -1, at + 1
    if at >= end or _byte_at(at) != COMMA:
        return INVALID, at
    return OK, _space(at + 1, end)


@njit(cache=True, nogil=True)
def _put_row(
    state: int,
    row: int,
    event: int,
    section: int,
    key: int,
    start: int,
    stop: int,
    kind: int,
    number: int,
) -> None:
    at = _int64_at(state + 8 * TAPE) + 8 * TAPE_COLUMNS * row
    _put64(at, event)
    _put64(at + 8, section)
    _put64(at + 16, key)
    _put64(at + 24, start)
    _put64(at + 32, stop)
    _put64(at + 40, kind)
    _put64(at + 48, number)


@njit(cache=True, nogil=True)
def _new_object(state: int) -> int:
    serial = _int64_at(state + 8 * SERIAL) + 1
    _put64(state + 8 * SERIAL, serial)
    return serial


@njit(cache=True, nogil=True)
def _open(at: int, end: int, state: int) -> tuple[int, int, bool]:
    """The object at `at`: (its number, for `_member`; the address of its first member, or
    after it when it is empty; whether it is empty)."""
    at = _space(at + 1, end)
    empty = at < end and _byte_at(at) == RBRACE
    return _new_object(state), (at + 1 if empty else at), empty


@njit(cache=True, nogil=True)
def _member(at: int, end: int, state: int, serial: int, count: int) -> tuple[int, int, int]:
    """(status, key id, the address of its value) of the member at `at` of object number
    `serial`, to be row `count` of the tape: FULL when the tape has no room for it."""
    key, at = _key(at, end, state, serial)
    if key < 0:
        return INVALID, key, at
    if count >= _int64_at(state + 8 * TAPE_ROWS):
        return FULL, key, at
    return OK, key, at


@njit(cache=True, nogil=True)
def _section(
    at: int, end: int, section: int, event: int, count: int, state: int
) -> tuple[int, int, int]:
    """The members of an event's `user` or `properties` object (at `at`) on the tape from
    row `count`: (status, rows on the tape, the address after the object)."""
    serial, at, empty = _open(at, end, state)
    if empty:
        return OK, count, at
    while True:
        status, key, at = _member(at, end, state, serial, count)
        if status != OK:
            return status, count, at
        start = at
        kind, at, number = _value(at, end, state)
        if kind < 0:
            return INVALID, count, start
        _put_row(state, count, event, section, key, start, at, kind, number)
        count += 1
        status, at = _next(at, end)
        if status != OK:
            return (OK if status < 0 else status), count, at


@njit(cache=True, nogil=True)
def _event(at: int, end: int, event: int, count: int, state: int) -> tuple[int, int, int]:
    """The event at `at` on the tape from row `count`, its `user` and `properties` objects
    opened (`user` must be an object, `properties` an object or null): (status, rows on
    the tape, the address after the event)."""
    serial, at, empty = _open(at, end, state)
    if empty:
        return OK, count, at
    while True:
        status, key, at = _member(at, end, state, serial, count)
        if status != OK:
            return status, count, at
        start, row, number = at, count, 0
        count += 1
        if key in (USER_KEY, PROPERTIES_KEY) and _byte_at(at) == LBRACE:
            kind = OBJECT
            section = USER if key == USER_KEY else PROPERTIES
            status, count, at = _section(at, end, section, event, count, state)
            if status != OK:
                return status, count, at
        else:
            kind, at, number = _value(at, end, state)
            if kind < 0 or key == USER_KEY or (key == PROPERTIES_KEY and kind != NULL):
                return INVALID, count, start
            if key == EVENT_TYPE_KEY and kind == STRING:  # its id, for grouping
                table, slots, key_bytes, keys = _tables(state)
                number = _intern(start + 1, at - 1, table, slots, key_bytes, keys)
                if number < 0:
                    return INVALID, count, start
        _put_row(state, row, event, TOP, key, start, at, kind, number)
        status, at = _next(at, end)
        if status != OK:
            return (OK if status < 0 else status), count, at


@njit(cache=True, nogil=True)
def scan(
    data: np.ndarray,
    tape: np.ndarray,
    events: np.ndarray,
    rows: int,
    count: int,
    table: np.ndarray,
    key_bytes: np.ndarray,
    keys: np.ndarray,
    stamps: np.ndarray,
) -> tuple[int, int, int]:
    """Scan one body `{"events": [...]}` onto a tape holding `rows` rows and `count` events:
    each event's span into `events` (rows of start and end address), its members onto
    `tape` (rows of event, section, key, value start and end address, kind, integer
    value). Returns (status, events on the tape, rows on the tape)."""
    state = np.empty(STATE + MAX_DEPTH // 8, dtype=np.int64)  # the stack of brackets last
    state[TABLE], state[SLOTS] = table.ctypes.data, table.shape[0]
    state[KEY_BYTES_AT], state[KEYS_AT] = key_bytes.ctypes.data, keys.ctypes.data
    state[STAMPS], state[STACK] = stamps.ctypes.data, np.int64(state.ctypes.data) + 8 * STATE
    state[SERIAL] = keys[-1]
    state[TAPE], state[TAPE_ROWS] = tape.ctypes.data, tape.shape[0]
    start = np.int64(data.ctypes.data)
    address = np.int64(state.ctypes.data)
    status, count, rows = _events(start, start + data.shape[0], events, count, rows, address)
    keys[-1] = state[SERIAL]
    return status, count, rows


@njit(cache=True, nogil=True)
def _events(
    at: int, end: int, events: np.ndarray, event: int, count: int, state: int
) -> tuple[int, int, int]:
    at = _space(at, end)
    if at >= end or _byte_at(at) != LBRACE:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at + 8 > end or _int64_at(at) != EVENTS_WORD:
        return INVALID, event, count
    at = _space(at + 8, end)
    if at >= end or _byte_at(at) != COLON:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at >= end or _byte_at(at) != LBRACKET:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at < end and _byte_at(at) == RBRACKET:
        at += 1
    else:
        while True:
            if at >= end or _byte_at(at) != LBRACE:
                return INVALID, event, count
            if event >= events.shape[0]:
                return FULL, event, count
            status, count, stop = _event(at, end, event, count, state)
            if status != OK:
                return status, event, count
            events[event, 0], events[event, 1] = at, stop
            event += 1
            at = _space(stop, end)
            if at < end and _byte_at(at) == RBRACKET:
                at += 1
                break
            if at >= end or _byte_at(at) != COMMA:
                return INVALID, event, count
            at = _space(at + 1, end)
    at = _space(at, end)
    if at >= end or _byte_at(at) != RBRACE:  # `events` must be the body's only member
        return INVALID, event, count
    if _space(at + 1, end) != end:
        return INVALID, event, count
    return OK, event, count


@njit(cache=True, nogil=True)
def _unescape(address: int, end: int, out: np.ndarray, at: int) -> int:
    """The JSON string text at `address` up to `end` (no quotes), decoded as orjson decodes
    it, in UTF-8 at `out[at:]`; returns the end in `out`, or -1 for an escape orjson refuses."""
    escapes = _ESCAPES
    while address < end:
        c = _byte_at(address)
        if c != BACKSLASH:
            out[at] = c
            at += 1
            address += 1
            continue
        letter = _byte_at(address + 1)
        if letter != 117:  # not a \u escape
            byte = escapes[letter] if letter < 128 else 0
            if byte == 0:
                return -1
            out[at] = byte
            at += 1
            address += 2
            continue
        code = _hex4(address + 2, end)
        address += 6
        if code < 0 or 0xDC00 <= code < 0xE000:
            return -1
        if 0xD800 <= code < 0xDC00:  # a high surrogate: a low one must follow
            if address + 1 >= end or _byte_at(address) != BACKSLASH:
                return -1
            low = _hex4(address + 2, end) if _byte_at(address + 1) == 117 else -1
            if low < 0xDC00 or low >= 0xE000:
                return -1
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
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
) -> bool:
    """Columns of texts as Arrow keeps strings: for each row of `cells` (tape rows, -1: a
    null), the values one after the other in `out`, `offsets[c]` into it, `valid[c]` and
    the most bytes of one value in `longest[c]`. Strings are written without their quotes,
    escapes decoded as orjson decodes them (False if it refuses one); numbers as they are."""
    at = 0
    for c in range(cells.shape[0]):
        offsets[c, 0] = at
        most = 0
        for r in range(cells.shape[1]):
            row = cells[c, r]
            kind = rows[row, 5] if row >= 0 else NULL
            start, stop = rows[row, 3], rows[row, 4]
            if kind == STRING:
                _copy(out, at, start + 1, stop - start - 2)
                at += stop - start - 2
            elif kind == ESCAPED:
                at = _unescape(start + 1, stop - 1, out, at)
                if at < 0:
                    return False
            elif kind in (INTEGER, NUMBER):
                _copy(out, at, start, stop - start)
                at += stop - start
            valid[c, r] = kind != NULL
            most = max(most, at - offsets[c, r])
            offsets[c, r + 1] = at
        longest[c] = most
    return True


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
            _intern_array(
                np.frombuffer(name, dtype=np.uint8), self.table, self.key_bytes, self.keys
            )

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
        value is of another kind or holds an escape orjson refuses."""
        columns, n = cells.shape
        size = _text_bytes(self.rows, cells, numbers)
        if size < 0:
            return None
        out = np.empty(size, dtype=np.uint8)
        offsets = np.empty((columns, n + 1), dtype=np.int32)
        valid = np.empty((columns, n), dtype=np.bool_)
        longest = np.zeros(columns, dtype=np.int64)
        if not _texts(self.rows, cells, out, offsets, valid, longest):
            return None
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
