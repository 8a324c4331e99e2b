"""The compiled loop that writes a chunk's JSON objects: one pass, no Python per event.

`delivery.json_template` flattens a partner's event shape into a small program of ops, and
hands over each leaf's values where polars keeps them (Arrow string views and int64 values,
read in place: no copy); `write_rows` runs the program once per row, writing straight into
one output buffer, with the commas and braces an object needs and the members whose value
is missing left out. Numba compiles it to machine code on first use (cached on disk after
that); values are copied with memcpy.

Ops (the columns of `program`, `(op, a, b)`):
- `OPEN a b`: start an object, under the key literal `a` (-1: none); `b` = 1 if it is left
  out (with its key) when none of its members is present.
- `CLOSE`: end the innermost object.
- `MEMBER a b`: the key literal `a` and the value of leaf `b`, if that value is present.
- `LITERAL a`: the literal `a`, always present (a whole `"key":value`).

Leaves (the rows of `leaves`: kind, validity bitmap address or 0, values address, offset
of the first row, index of the first data buffer in `buffers`): `TEXT` (string views of JSON
text, copied as they are), `STRING` (string views, written in quotes and escaped as orjson
escapes them: copied as they are unless a quote, backslash or control byte is found,
8 bytes at a time), `LONG_PLAIN` (a `STRING` leaf whose data buffers hold no byte to
escape, as `any_to_escape` found: only the strings held in their views, 12 bytes at most,
are checked), `INTEGER` (int64 values, in decimal), `ISO_SECONDS` (int64 UNIX
seconds, as the string `"YYYY-MM-DDTHH:MM:SSZ"`: years 1 to 9999) and `ABSENT` (no values).
Every row of `leaves` is read (values are prefetched a few rows ahead): one no op refers
to must be `ABSENT`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

OPEN, CLOSE, MEMBER, LITERAL = 0, 1, 2, 3
ABSENT, TEXT, STRING, INTEGER, ISO_SECONDS, LONG_PLAIN = -1, 0, 1, 2, 3, 4
ISO_BYTES = 22  # `"YYYY-MM-DDTHH:MM:SSZ"`, quotes included
ISO_RANGE = (-62_135_596_800, 253_402_300_799)  # 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z
KIND, VALIDITY, VALUES, OFFSET, BUFFERS = 0, 1, 2, 3, 4  # columns of `leaves`
VIEW = 16  # bytes of an Arrow string view: length, then the string if <= 12 bytes, else
INLINE = 12  # its prefix, the index of its data buffer and its offset there (int32 each)
MAX_DEPTH = 16
# Prefetching: the values of row + VALUES_AHEAD and the strings of row + STRINGS_AHEAD are
# asked for while a row is written (the loads of views and strings were where the kernel
# waited most: ~25% less kernel time on the benchmark's hour).
VALUES_AHEAD, STRINGS_AHEAD = 8, 2
ESCAPE_GROWTH = 6  # a byte escaped as \u00XX
COMMA, QUOTE, LBRACE, RBRACE, MINUS, ZERO, BACKSLASH = 44, 34, 123, 125, 45, 48, 92
ONES = np.uint64(0x0101010101010101)
HIGHS = np.uint64(0x8080808080808080)
# How orjson escapes control characters: a letter for five of them, \u00xx for the others.
SHORT_ESCAPES = np.zeros(32, dtype=np.uint8)
for _byte, _letter in ((8, "b"), (9, "t"), (10, "n"), (12, "f"), (13, "r")):
    SHORT_ESCAPES[_byte] = ord(_letter)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()


def _pointer(builder: ir.IRBuilder, address: ir.Value, bits: int) -> ir.Value:
    return builder.inttoptr(address, ir.PointerType(ir.IntType(bits)))


@intrinsic
def _memcpy(typingctx, to, source, size):  # type: ignore[no-untyped-def]
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        cgutils.raw_memcpy(
            builder, _pointer(builder, args[0], 8), _pointer(builder, args[1], 8), args[2], 1
        )
        return context.get_dummy_value()

    return types.none(to, source, size), codegen


@intrinsic
def copy_into(typingctx, out, pos, address, size):  # type: ignore[no-untyped-def]
    """`out[pos:pos + size] =` the `size` bytes at `address`, by LLVM's memcpy: ~10x faster
    than a byte loop or a slice assignment for the short values JSON is made of."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        target = context.make_array(signature.args[0])(context, builder, args[0])
        to = builder.gep(target.data, [args[1]])
        cgutils.raw_memcpy(builder, to, _pointer(builder, args[2], 8), args[3], 1)
        return context.get_dummy_value()

    return types.none(out, pos, address, size), codegen


def _reader(bits: int, widen: str, result: types.Type):  # type: ignore[no-untyped-def]
    """An intrinsic reading the `bits`-bit integer at an address (unaligned), widened to 64
    bits with zeros or its sign ("" if it has 64)."""

    @intrinsic
    def read(typingctx, address):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            value = builder.load(_pointer(builder, args[0], bits), align=1)
            if widen == "zero":
                return builder.zext(value, ir.IntType(64))
            return builder.sext(value, ir.IntType(64)) if widen == "sign" else value

        return result(address), codegen

    return read


def _writer(bits: int):  # type: ignore[no-untyped-def]
    """An intrinsic storing an int64 at an address as a `bits`-bit integer (unaligned)."""

    @intrinsic
    def store(typingctx, address, value):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            narrow = builder.trunc(args[1], ir.IntType(bits)) if bits < 64 else args[1]
            builder.store(narrow, _pointer(builder, args[0], bits), align=1)
            return context.get_dummy_value()

        return types.none(address, value), codegen

    return store


@intrinsic
def prefetch(typingctx, address):  # type: ignore[no-untyped-def]
    """Ask the CPU to bring the cache line at `address` in (a hint: never faults)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        pointer = _pointer(builder, args[0], 8)
        int32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [pointer.type, int32, int32, int32]),
            "llvm.prefetch.p0",
        )
        builder.call(fn, [pointer, int32(0), int32(3), int32(1)])
        return context.get_dummy_value()

    return types.none(address), codegen


byte_at = _reader(8, "zero", types.int64)
_int32_at = _reader(32, "sign", types.int64)
int64_at = _reader(64, "", types.int64)
_word_at = _reader(64, "", types.uint64)  # 8 bytes at once, for the escape check
u32_at = _reader(32, "zero", types.int64)
put8, put32, put64 = _writer(8), _writer(32), _writer(64)


@njit(cache=True, nogil=True)
def _put(to: int, source: int, size: int) -> None:
    """Copy `size` bytes from address `source` to address `to`: up to 32 by overlapping
    word loads and stores (never past either end), longer ones by memcpy."""
    if size > 32:
        _memcpy(to, source, size)
    elif size >= 16:
        a, b = int64_at(source), int64_at(source + 8)
        c, d = int64_at(source + size - 16), int64_at(source + size - 8)
        put64(to, a)
        put64(to + 8, b)
        put64(to + size - 16, c)
        put64(to + size - 8, d)
    elif size >= 8:
        a, b = int64_at(source), int64_at(source + size - 8)
        put64(to, a)
        put64(to + size - 8, b)
    elif size >= 4:
        a, b = u32_at(source), u32_at(source + size - 4)
        put32(to, a)
        put32(to + size - 4, b)
    else:
        for i in range(size):
            put8(to + i, byte_at(source + i))


@njit(cache=True, nogil=True)
def _flags(word: np.uint64) -> np.uint64:
    """The high bit of each of 8 bytes that is a control byte, a quote or a backslash (the
    has-zero-byte trick on the word and on it xor'ed with each byte sought: the lowest such
    byte is always flagged; a byte above one may be flagged falsely, never one below)."""
    below = (word - ONES * np.uint64(0x20)) & ~word
    quoted = word ^ (ONES * np.uint64(QUOTE))
    quotes = (quoted - ONES) & ~quoted
    slashed = word ^ (ONES * np.uint64(BACKSLASH))
    slashes = (slashed - ONES) & ~slashed
    return (below | quotes | slashes) & HIGHS


@njit(cache=True, nogil=True)
def _needs_escaping(address: int, size: int) -> bool:
    """Whether a string view's bytes hold one that JSON escapes, checked 8 at a time: the
    last word overlaps the one before it; a string under 8 bytes is inline in its view,
    which holds 12, so its word is read whole and the bytes past the string masked off."""
    if size < 8:
        if size == 0:
            return False
        inside = (np.uint64(1) << np.uint64(8 * size)) - np.uint64(1)
        return (_flags(_word_at(address)) & inside) != 0
    i = 0
    while i + 8 <= size:
        if _flags(_word_at(address + i)) != 0:
            return True
        i += 8
    return i < size and _flags(_word_at(address + size - 8)) != 0


@njit(cache=True, nogil=True)
def _put_escaped(out: np.ndarray, pos: int, address: int, size: int, short: np.ndarray) -> int:
    """The bytes of a string as the inside of a JSON string, escaped as orjson escapes it."""
    for i in range(size):
        byte = byte_at(address + i)
        if byte in (QUOTE, BACKSLASH):
            out[pos] = BACKSLASH
            out[pos + 1] = byte
            pos += 2
        elif byte < 0x20 and short[byte] != 0:
            out[pos] = BACKSLASH
            out[pos + 1] = short[byte]
            pos += 2
        elif byte < 0x20:
            out[pos], out[pos + 1], out[pos + 2], out[pos + 3] = BACKSLASH, 117, ZERO, ZERO
            out[pos + 4] = HEX[byte >> 4]
            out[pos + 5] = HEX[byte & 15]
            pos += 6
        else:
            out[pos] = byte
            pos += 1
    return pos


@njit(cache=True, nogil=True)
def _put_int(out: np.ndarray, pos: int, value: int, digits: np.ndarray) -> int:
    if value == 0:
        out[pos] = ZERO
        return pos + 1
    negative = value < 0
    count = 0
    while value != 0:  # digits in reverse, never negating (int64's minimum has no opposite)
        remainder = value % -10 if negative else value % 10
        digits[count] = ZERO + abs(remainder)
        count += 1
        value = (value - remainder) // 10
    if negative:
        out[pos] = MINUS
        pos += 1
    for i in range(count - 1, -1, -1):
        out[pos] = digits[i]
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def _put_digits(out: np.ndarray, pos: int, value: int, count: int) -> int:
    """`value` (>= 0) in `count` decimal digits, zero-padded."""
    for i in range(count - 1, -1, -1):
        out[pos + i] = ZERO + value % 10
        value //= 10
    return pos + count


@njit(cache=True, nogil=True)
def _put_iso(out: np.ndarray, pos: int, seconds: int) -> int:
    """UNIX `seconds` as `"YYYY-MM-DDTHH:MM:SSZ"` (a day's civil date by Howard Hinnant's
    `civil_from_days`); the caller keeps `seconds` within `ISO_RANGE`."""
    days = seconds // 86_400
    second = seconds - days * 86_400
    shifted = days + 719_468  # days since 0000-03-01
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # March = 0
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    out[pos] = QUOTE
    pos = _put_digits(out, pos + 1, year, 4)
    out[pos] = MINUS
    pos = _put_digits(out, pos + 1, month, 2)
    out[pos] = MINUS
    pos = _put_digits(out, pos + 1, day, 2)
    out[pos] = 84  # T
    pos = _put_digits(out, pos + 1, second // 3_600, 2)
    out[pos] = 58  # :
    pos = _put_digits(out, pos + 1, second // 60 % 60, 2)
    out[pos] = 58
    pos = _put_digits(out, pos + 1, second % 60, 2)
    out[pos] = 90  # Z
    out[pos + 1] = QUOTE
    return pos + 2


@njit(cache=True, nogil=True)
def _present(leaves: np.ndarray, leaf: int, row: int) -> bool:
    if leaves[leaf, KIND] == ABSENT:
        return False
    validity = leaves[leaf, VALIDITY]
    if validity == 0:
        return True
    at = leaves[leaf, OFFSET] + row
    return (byte_at(validity + (at >> 3)) >> (at & 7)) & 1 == 1


@njit(cache=True, nogil=True)
def _string(leaves: np.ndarray, leaf: int, row: int, buffers: np.ndarray) -> tuple[int, int]:
    """(address, size) of a string view's bytes."""
    view = leaves[leaf, VALUES] + (leaves[leaf, OFFSET] + row) * VIEW
    size = _int32_at(view)
    if size <= INLINE:
        return view + 4, size
    buffer = buffers[leaves[leaf, BUFFERS] + _int32_at(view + 8)]
    return buffer + _int32_at(view + 12), size


@njit(cache=True, nogil=True)
def _prefetch(leaves: np.ndarray, buffers: np.ndarray, row: int, left: int) -> None:
    """Prefetch each leaf's value `VALUES_AHEAD` rows on, and the bytes of its string
    `STRINGS_AHEAD` rows on if that row is one of the `left` to write and its string is in a
    data buffer. Its validity is not looked up (the kernel is 7-9% faster without: 900k
    events 0.43-0.45 -> 0.40-0.41 s, faster in 21 of 22 interleaved passes): a null's view
    may hold anything, so its buffer index is kept within `buffers`, and a prefetch of an
    address that is nothing never faults."""
    for leaf in range(leaves.shape[0]):
        kind = leaves[leaf, KIND]
        if kind == ABSENT:
            continue
        width = 8 if kind in (INTEGER, ISO_SECONDS) else VIEW
        prefetch(leaves[leaf, VALUES] + (leaves[leaf, OFFSET] + row + VALUES_AHEAD) * width)
        if width == VIEW and left > STRINGS_AHEAD:
            view = leaves[leaf, VALUES] + (leaves[leaf, OFFSET] + row + STRINGS_AHEAD) * VIEW
            if _int32_at(view) > INLINE:
                buffer = leaves[leaf, BUFFERS] + _int32_at(view + 8)
                if 0 <= buffer < buffers.shape[0]:
                    prefetch(buffers[buffer] + _int32_at(view + 12))


@njit(cache=True, nogil=True)
def write_rows(
    program: np.ndarray,
    literals: np.ndarray,
    literal_offsets: np.ndarray,
    leaves: np.ndarray,
    buffers: np.ndarray,
    first: int,
    reserve: int,
    out: np.ndarray,
    bounds: np.ndarray,
) -> int:
    """Write the objects of rows `first`, `first + 1`, ... (one per entry of `bounds` but
    the last), each followed by a comma: row `first + r` is `out[bounds[r]:bounds[r + 1] - 1]`.

    Returns how many rows were written: all of them, or fewer where `out` has no room for the
    next (the caller goes on in another buffer). `reserve` bounds the bytes a row writes
    besides its strings' own (literals, punctuation, numbers, quotes): a row is begun only
    with that much room left, and each string is written only if it fits with it (escaped,
    at most `ESCAPE_GROWTH` times its bytes), so nothing is ever written past `out`."""
    counts = np.zeros(MAX_DEPTH, dtype=np.int64)  # members written, per open object
    rollback = np.zeros(MAX_DEPTH, dtype=np.int64)  # where each open object began
    optional = np.zeros(MAX_DEPTH, dtype=np.int64)
    digits = np.empty(24, dtype=np.uint8)
    short = SHORT_ESCAPES
    ops, firsts, seconds = program[0], program[1], program[2]
    text = literals.ctypes.data
    base = np.int64(out.ctypes.data)
    pos = 0
    bounds[0] = 0
    rows = bounds.shape[0] - 1
    capacity = out.shape[0]
    for r in range(rows):
        if pos + reserve > capacity:
            return r
        row = first + r
        depth = -1
        _prefetch(leaves, buffers, row, rows - r)
        for step in range(ops.shape[0]):
            op, a, b = ops[step], firsts[step], seconds[step]
            if op == OPEN:
                start = pos
                if depth >= 0 and counts[depth] > 0:
                    out[pos] = COMMA
                    pos += 1
                if a >= 0:
                    size = literal_offsets[a + 1] - literal_offsets[a]
                    _put(base + pos, text + literal_offsets[a], size)
                    pos += size
                out[pos] = LBRACE
                pos += 1
                depth += 1
                counts[depth], rollback[depth], optional[depth] = 0, start, b
            elif op == CLOSE:
                if optional[depth] != 0 and counts[depth] == 0:
                    pos = rollback[depth]  # an empty optional object: left out, key and all
                else:
                    out[pos] = RBRACE
                    pos += 1
                    if depth > 0:
                        counts[depth - 1] += 1
                depth -= 1
            elif op == LITERAL or _present(leaves, b, row):
                if counts[depth] > 0:
                    out[pos] = COMMA
                    pos += 1
                counts[depth] += 1
                size = literal_offsets[a + 1] - literal_offsets[a]
                _put(base + pos, text + literal_offsets[a], size)
                pos += size
                if op == LITERAL:
                    continue
                kind = leaves[b, KIND]
                if kind in (INTEGER, ISO_SECONDS):
                    value = int64_at(leaves[b, VALUES] + (leaves[b, OFFSET] + row) * 8)
                    if kind == INTEGER:
                        pos = _put_int(out, pos, value, digits)
                    else:
                        pos = _put_iso(out, pos, value)
                    continue
                address, size = _string(leaves, b, row, buffers)
                escaping = kind != TEXT and (kind == STRING or size <= INLINE)
                escaping = escaping and _needs_escaping(address, size)
                if pos + (ESCAPE_GROWTH * size if escaping else size) + reserve > capacity:
                    return r  # this row is left for the next buffer
                if kind == TEXT:
                    _put(base + pos, address, size)
                    pos += size
                    continue
                out[pos] = QUOTE
                pos += 1
                if escaping:
                    pos = _put_escaped(out, pos, address, size, short)
                else:
                    _put(base + pos, address, size)
                    pos += size
                out[pos] = QUOTE
                pos += 1
        out[pos] = COMMA
        pos += 1
        bounds[r + 1] = pos
    return rows


@njit(cache=True, nogil=True)
def gather(source: np.ndarray, starts: np.ndarray, stops: np.ndarray, out: np.ndarray) -> None:
    """`out` = the slices `source[starts[i]:stops[i]]`, one after the other."""
    pos = 0
    base = source.ctypes.data
    for i in range(starts.shape[0]):
        size = stops[i] - starts[i]
        copy_into(out, pos, base + starts[i], size)
        pos += size


@intrinsic
def _memmove(typingctx, out, to, start, size):  # type: ignore[no-untyped-def]
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        target, source = builder.gep(array.data, [args[1]]), builder.gep(array.data, [args[2]])
        cgutils.raw_memmove(builder, target, source, args[3], 1)
        return context.get_dummy_value()

    return types.none(out, to, start, size), codegen


@njit(cache=True, nogil=True)
def move(out: np.ndarray, to: int, start: int, size: int) -> None:
    """`out[to:to + size] = out[start:start + size]`, the two ranges may overlap (memmove)."""
    _memmove(out, to, start, size)


@njit(cache=True, nogil=True)
def copy_at(addresses: np.ndarray, sizes: np.ndarray, out: np.ndarray) -> None:
    """`out` = the `sizes[i]` bytes at `addresses[i]`, one after the other (the caller keeps
    the memory they point into alive)."""
    pos = 0
    for i in range(addresses.shape[0]):
        copy_into(out, pos, addresses[i], sizes[i])
        pos += sizes[i]


@njit(cache=True, nogil=True)
def framed(
    head: np.ndarray, tail: int, data: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    """`out` = for each string `data[offsets[i]:offsets[i + 1]]`: `head`, it, then `tail`."""
    pos = 0
    size = head.shape[0]
    start = head.ctypes.data
    base = data.ctypes.data
    for i in range(offsets.shape[0] - 1):
        copy_into(out, pos, start, size)
        pos += size
        length = offsets[i + 1] - offsets[i]
        copy_into(out, pos, base + offsets[i], length)
        pos += length
        out[pos] = tail
        pos += 1


@njit(cache=True, nogil=True)
def view_bytes(leaves: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per leaf of string views (`TEXT`, `STRING`, `LONG_PLAIN`), a bound on the bytes its
    rows `start` to `stop` hold: the sum of the lengths in their views (a valid slot's is its
    length; a null's may hold anything, so it counts as at least 0); 0 for other leaves."""
    held = np.zeros(leaves.shape[0], dtype=np.int64)
    for leaf in range(leaves.shape[0]):
        if leaves[leaf, KIND] not in (TEXT, STRING, LONG_PLAIN):
            continue
        views = leaves[leaf, VALUES] + leaves[leaf, OFFSET] * VIEW
        total = 0
        for row in range(start, stop):
            total += max(_int32_at(views + row * VIEW), 0)
        held[leaf] = total
    return held


@njit(cache=True, nogil=True)
def any_to_escape(data: np.ndarray) -> bool:
    """Whether `data` holds a quote, backslash or control byte: every byte read, no early
    exit, a loop LLVM turns into SIMD (~25 GB/s here: a whole data buffer at once)."""
    found = False
    for i in range(data.shape[0]):
        byte = data[i]
        found |= (byte < 0x20) | (byte == QUOTE) | (byte == BACKSLASH)
    return found


def load() -> None:
    """Load the kernels' machine code now (from numba's on-disk cache; compiled the first
    time). Numba does it at each function's first call anyway, the first call of all also
    setting numba itself up (~0.5 s): a caller that times its work calls this first, like an
    import. Importing this module does not, so a task with nothing to write (an empty hour)
    never pays it."""
    readonly = np.frombuffer(b" ", dtype=np.uint8)
    none = np.zeros(1, dtype=np.int64)
    out = np.zeros(1, dtype=np.uint8)
    leaves = np.full((1, 5), ABSENT, dtype=np.int64)
    write_rows(np.zeros((3, 0), dtype=np.int64), readonly, none, leaves, none, 0, 0, out, none)
    gather(out, none[:0], none[:0], out)
    gather(readonly, none[:0], none[:0], out)  # a source in `bytes`
    copy_at(none[:0], none[:0], out)
    framed(readonly, 0, readonly, none, out)
    move(out, 0, 0, 0)
    view_bytes(leaves, 0, 0)
    any_to_escape(out)
