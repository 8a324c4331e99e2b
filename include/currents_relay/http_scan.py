"""Custom HTTP bodies read in one compiled pass, without a Python object per value.

`scan` reads a body `{"events": [{...}, ...]}` onto a *tape* (`http_tape.Tape`): each event's
span, and one row per member of an event, of its `user` object or of its `properties` object
(section 0, 1 or 2), with its key (interned: one id per distinct key, for the whole ingest),
where its value lies and its kind, and for integers their value. Nested values are checked
as JSON all through but not opened: whoever needs them parses their bytes with orjson
(`http_batch` only does so for values the catalogue keeps as JSON, lists, and events with
unknown fields).

The scan is strict: anything outside the plain shape (a body key other than `events`, a key
with an escape or met twice in one object, a `user` that is not an object, nesting deeper
than `MAX_DEPTH`, JSON that orjson would refuse) makes it give up, and the caller reads the
body with orjson as before, so the result never depends on which path read it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from currents_relay.scan_kernel import byte_at, int64_at, put8, put64, u32_at

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
ESCAPES = np.zeros(128, dtype=np.uint8)  # `\x` -> the byte it stands for (0: invalid)
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
    ESCAPES[ord(_letter)] = _byte


TRUE_WORD, NULL_WORD, FALS_WORD = (int.from_bytes(w, "little") for w in (b"true", b"null", b"fals"))
EVENTS_WORD = int.from_bytes(b'"events"', "little")

# Below, the body and every table are read and written through addresses (ints), not
# arrays: numba counts references to each array passed to a function, which cost more
# than the scanning itself.


@njit(cache=True, nogil=True)
def _space(at: int, end: int) -> int:
    while at < end:
        c = byte_at(at)
        if c != 32 and c != 10 and c != 13 and c != 9:
            return at
        at += 1
    return at


@njit(cache=True, nogil=True)
def hex4(at: int, end: int) -> int:
    """The 4 hex digits at `at` as a number; -1 if they are not 4 hex digits."""
    if at + 4 > end:
        return -1
    value = 0
    for i in range(at, at + 4):
        c = byte_at(i)
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
        c = byte_at(at)
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
        letter = byte_at(at + 1)
        if letter != 117:  # not \u
            if letter >= 128 or ESCAPES[letter] == 0:
                return -1, False
            at += 2
            continue
        code = hex4(at + 2, end)
        at += 6
        if code < 0 or 0xDC00 <= code < 0xE000:
            return -1, False
        if 0xD800 <= code < 0xDC00:  # a high surrogate: a low one must follow
            if at + 1 >= end or byte_at(at) != BACKSLASH or byte_at(at + 1) != 117:
                return -1, False
            low = hex4(at + 2, end)
            if low < 0xDC00 or low >= 0xE000:
                return -1, False
            at += 6
    return -1, False


@njit(cache=True, nogil=True)
def _digits(at: int, end: int) -> int:
    while at < end and ZERO <= byte_at(at) <= NINE:
        at += 1
    return at


@njit(cache=True, nogil=True)
def _number_end(at: int, end: int) -> tuple[int, bool]:
    """(end of the JSON number at `at`, whether it is an integer); (-1, False) if invalid."""
    if at < end and byte_at(at) == MINUS:
        at += 1
    if at >= end:
        return -1, False
    c = byte_at(at)
    if c == ZERO:
        at += 1
    elif ZERO < c <= NINE:
        at = _digits(at, end)
    else:
        return -1, False
    integral = True
    if at < end and byte_at(at) == DOT:
        stop = _digits(at + 1, end)
        if stop == at + 1:
            return -1, False
        at, integral = stop, False
    if at < end and (byte_at(at) == 101 or byte_at(at) == 69):  # e, E
        at += 1
        if at < end and (byte_at(at) == PLUS or byte_at(at) == MINUS):
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
    word = u32_at(at)
    if word == TRUE_WORD:
        return TRUE, at + 4
    if word == NULL_WORD:
        return NULL, at + 4
    if word == FALS_WORD and at + 5 <= end and byte_at(at + 4) == 101:
        return FALSE, at + 5
    return -1, at


@njit(cache=True, nogil=True)
def _scalar_end(at: int, end: int) -> int:
    """The end of the string, number or word at `at`; -1 if it is none (or invalid)."""
    c = byte_at(at)
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
    if at >= end or byte_at(at) != QUOTE:
        return -1
    close, _ = _string_end(at, end)
    at = _space(close + 1, end) if close >= 0 else end
    if at >= end or byte_at(at) != COLON:
        return -1
    at = _space(at + 1, end)
    return at if at < end else -1


@njit(cache=True, nogil=True)
def _nested_end(at: int, end: int, stack: int) -> int:
    """The end of the object or array at `at`, checked as JSON all through (`stack`: room
    for `MAX_DEPTH` open brackets); -1 if it is not valid JSON or nests deeper."""
    depth = 0
    while True:  # at the start of a value
        c = byte_at(at)
        if c in (LBRACE, LBRACKET):
            if depth == MAX_DEPTH:
                return -1
            put8(stack + depth, c)
            depth += 1
            at = _space(at + 1, end)
            if at >= end:
                return -1
            if byte_at(at) == c + 2:  # `}` and `]` follow `{` and `[` by 2
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
            c = byte_at(at)
            opened = byte_at(stack + depth - 1)
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
        h = (h ^ np.uint64(byte_at(i))) * np.uint64(1099511628211)
    slot = np.int64(h & np.uint64(slots - 1))
    size = stop - start
    while True:
        found = int64_at(table + 8 * slot)
        if found < 0:
            break
        first = int64_at(keys + 8 * (2 + 2 * found))
        if int64_at(keys + 8 * (3 + 2 * found)) - first == size:
            same = True
            for i in range(size):
                if byte_at(key_bytes + first + i) != byte_at(start + i):
                    same = False
                    break
            if same:
                return found
        slot = (slot + 1) & (slots - 1)
    count, used = int64_at(keys), int64_at(keys + 8)
    if 2 * (count + 1) > slots or used + size > KEY_BYTES:
        return -1
    for i in range(size):
        put8(key_bytes + used + i, byte_at(start + i))
    put64(keys + 8 * (2 + 2 * count), used)
    put64(keys + 8 * (3 + 2 * count), used + size)
    put64(keys, count + 1)
    put64(keys + 8, used + size)
    put64(table + 8 * slot, count)
    return count


@njit(cache=True, nogil=True)
def intern_array(
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
    negative = byte_at(start) == MINUS
    value = 0
    for i in range(start + 1 if negative else start, stop):
        value = value * 10 + (byte_at(i) - ZERO)
    return -value if negative else value


@njit(cache=True, nogil=True)
def _value(at: int, end: int, state: int) -> tuple[int, int, int]:
    """(kind, end, integer value or 0) of the JSON value at `at`; kind -1 if invalid."""
    c = byte_at(at)
    if c == QUOTE:
        close, escaped = _string_end(at, end)
        if close < 0:
            return -1, at, 0
        return (ESCAPED if escaped else STRING), close + 1, 0
    if c in (LBRACE, LBRACKET):
        stop = _nested_end(at, end, int64_at(state + 8 * STACK))
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
    if at >= end or byte_at(at) != QUOTE:
        return -1, at
    close, escaped = _string_end(at, end)
    if close < 0 or escaped:
        return -1, at
    table, slots, key_bytes, keys = _tables(state)
    key = _intern(at + 1, close, table, slots, key_bytes, keys)
    stamps = int64_at(state + 8 * STAMPS)
    if key < 0 or int64_at(stamps + 8 * key) == serial:  # twice: orjson decides
        return -1, at
    put64(stamps + 8 * key, serial)
    at = _space(close + 1, end)
    if at >= end or byte_at(at) != COLON:
        return -1, at
    at = _space(at + 1, end)
    return (key, at) if at < end else (-1, at)


@njit(cache=True, nogil=True)
def _tables(state: int) -> tuple[int, int, int, int]:
    return (
        int64_at(state + 8 * TABLE),
        int64_at(state + 8 * SLOTS),
        int64_at(state + 8 * KEY_BYTES_AT),
        int64_at(state + 8 * KEYS_AT),
    )


@njit(cache=True, nogil=True)
def _next(at: int, end: int) -> tuple[int, int]:
    """After a member: (OK, the next member's address), (-1, after the object's `}`) or
    (INVALID, at)."""
    at = _space(at, end)
    if at < end and byte_at(at) == RBRACE:
        return -1, at + 1
    if at >= end or byte_at(at) != COMMA:
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
    at = int64_at(state + 8 * TAPE) + 8 * TAPE_COLUMNS * row
    put64(at, event)
    put64(at + 8, section)
    put64(at + 16, key)
    put64(at + 24, start)
    put64(at + 32, stop)
    put64(at + 40, kind)
    put64(at + 48, number)


@njit(cache=True, nogil=True)
def _new_object(state: int) -> int:
    serial = int64_at(state + 8 * SERIAL) + 1
    put64(state + 8 * SERIAL, serial)
    return serial


@njit(cache=True, nogil=True)
def _open(at: int, end: int, state: int) -> tuple[int, int, bool]:
    """The object at `at`: (its number, for `_member`; the address of its first member, or
    after it when it is empty; whether it is empty)."""
    at = _space(at + 1, end)
    empty = at < end and byte_at(at) == RBRACE
    return _new_object(state), (at + 1 if empty else at), empty


@njit(cache=True, nogil=True)
def _member(at: int, end: int, state: int, serial: int, count: int) -> tuple[int, int, int]:
    """(status, key id, the address of its value) of the member at `at` of object number
    `serial`, to be row `count` of the tape: FULL when the tape has no room for it."""
    key, at = _key(at, end, state, serial)
    if key < 0:
        return INVALID, key, at
    if count >= int64_at(state + 8 * TAPE_ROWS):
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
        if key in (USER_KEY, PROPERTIES_KEY) and byte_at(at) == LBRACE:
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
    if at >= end or byte_at(at) != LBRACE:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at + 8 > end or int64_at(at) != EVENTS_WORD:
        return INVALID, event, count
    at = _space(at + 8, end)
    if at >= end or byte_at(at) != COLON:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at >= end or byte_at(at) != LBRACKET:
        return INVALID, event, count
    at = _space(at + 1, end)
    if at < end and byte_at(at) == RBRACKET:
        at += 1
    else:
        while True:
            if at >= end or byte_at(at) != LBRACE:
                return INVALID, event, count
            if event >= events.shape[0]:
                return FULL, event, count
            status, count, stop = _event(at, end, event, count, state)
            if status != OK:
                return status, event, count
            events[event, 0], events[event, 1] = at, stop
            event += 1
            at = _space(stop, end)
            if at < end and byte_at(at) == RBRACKET:
                at += 1
                break
            if at >= end or byte_at(at) != COMMA:
                return INVALID, event, count
            at = _space(at + 1, end)
    at = _space(at, end)
    if at >= end or byte_at(at) != RBRACE:  # `events` must be the body's only member
        return INVALID, event, count
    if _space(at + 1, end) != end:
        return INVALID, event, count
    return OK, event, count
