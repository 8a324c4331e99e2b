"""A partner's event shape as a template, written for a whole chunk by `json_kernel`.

A template is an `Obj` of members: `Member(key, leaf or Obj)` and `Constant(key, value)`. A
*leaf* is a polars expression giving each row's value (null: the member is left out, as a
dict-per-row encoder leaves out what it never sets) and how the kernel writes it: integers
in decimal; strings in quotes, escaped as orjson escapes them; anything else as the JSON
text polars writes (`struct.json_encode`).

`render` evaluates a chunk's leaves in one polars `select`, hands the kernel the addresses
of their Arrow buffers (read in place) and returns the chunk's events, written back to back
in one buffer. The row path (`Partner.wire_event` + orjson) stays the definition: tests prove
both write the same events.
"""

from __future__ import annotations

import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from currents_relay.delivery import json_kernel as kernel
from currents_relay.delivery.batching import Encoded


@dataclass(frozen=True)
class Leaf:
    """Each row's value: an expression and how the kernel writes it."""

    expr: pl.Expr
    kind: int = kernel.TEXT

    def where(self, condition: pl.Expr) -> Leaf:
        """The value where `condition` holds, missing elsewhere."""
        return Leaf(pl.when(condition).then(self.expr), self.kind)


@dataclass(frozen=True)
class Member:
    key: str
    value: Leaf | Obj


@dataclass(frozen=True)
class Constant:
    key: str
    value: Any  # written as orjson writes it


@dataclass(frozen=True)
class Obj:
    """`{...}` of its present members; an `optional` object with none is left out."""

    members: list[Member | Constant]
    optional: bool = False


def key(name: str) -> str:
    """`"name":` as orjson writes it."""
    return orjson.dumps(name).decode() + ":"


def value(column: pl.Series, expr: pl.Expr | None = None) -> Leaf:
    """The leaf of a column's values (or of `expr`, of the column's type)."""
    expr = pl.col(column.name) if expr is None else expr
    kind = column.dtype
    if kind.is_integer() and kind != pl.UInt64:
        return Leaf(expr.cast(pl.Int64), kernel.INTEGER)
    if kind == pl.String:
        return Leaf(expr, kernel.STRING)
    if kind == pl.Boolean or kind == pl.UInt64:
        return Leaf(expr.cast(pl.String))
    encoded = pl.struct(expr.alias("v")).struct.json_encode()  # `{"v":value}`
    return Leaf(
        pl.when(expr.is_not_null()).then(encoded.str.strip_prefix('{"v":').str.strip_suffix("}"))
    )


def string(expr: pl.Expr) -> Leaf:
    """A leaf of strings (written in quotes)."""
    return Leaf(expr.cast(pl.String), kernel.STRING)


def iso_seconds(expr: pl.Expr) -> Leaf:
    """A leaf of UNIX seconds, written as the string `"YYYY-MM-DDTHH:MM:SSZ"` (what
    `datetime.isoformat` writes for a whole second in UTC, with `Z`). The kernel writes
    years 1 to 9999: a template that uses it must keep other values out (`in_iso_range`)."""
    return Leaf(expr.cast(pl.Int64), kernel.ISO_SECONDS)


def in_iso_range(column: pl.Series) -> bool:
    """Whether every value of a column of UNIX seconds can be an `iso_seconds` leaf."""
    low, high = column.min(), column.max()
    return low is None or (kernel.ISO_RANGE[0] <= low and high <= kernel.ISO_RANGE[1])


def text(expr: pl.Expr) -> Leaf:
    """A leaf of JSON text, spliced in as it is (e.g. stored JSON)."""
    return Leaf(expr)


def column(frame: pl.DataFrame, name: str, as_key: str | None = None) -> Member:
    """The member `"as_key":value` of a column (under its own name by default)."""
    return Member(as_key or name, value(frame[name]))


def truthy(column: pl.Series) -> pl.Expr:
    """Python's truthiness of each value: not null, and not "", 0 or false."""
    name, kind = column.name, column.dtype
    present = pl.col(name).is_not_null()
    if kind == pl.String:
        return present & (pl.col(name) != "")
    if kind == pl.Boolean:
        return present & pl.col(name)
    if kind.is_numeric():
        return present & (pl.col(name) != 0)
    return present


def standard_json(stored: pl.Series) -> bool:
    """Whether a column of stored JSON text can be spliced into an event as it is: the text
    `json.dumps` writes for a NaN or infinite float (NaN, Infinity) is JSON no partner reads
    (the row path writes such a value as null, as orjson does). A string that merely holds
    one of those words counts too: its chunk takes the row path, which is slower, not wrong."""
    return not stored.str.contains("NaN|Infinity").any()


def wire_chunk_ok(frame: pl.DataFrame, integer_time: bool = False) -> bool:
    """Whether a chunk can be written from a template: one event type and, if asked, integer
    `time`. (Each template puts the fields the catalogue does not know, `extra`, where its
    `wire_event` does.)"""
    if "event_type" not in frame.columns or frame["event_type"].null_count():
        return False
    if integer_time and not frame.schema.get("time", pl.Null).is_integer():
        return False
    return frame["event_type"].n_unique() == 1


@dataclass
class _Program:
    """A template flattened into kernel ops, with its literals and leaves."""

    ops: list[tuple[int, int, int]] = field(default_factory=list)
    literals: list[bytes] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)

    def literal(self, text: str) -> int:
        self.literals.append(text.encode())
        return len(self.literals) - 1

    def add(self, node: Obj | Member | Constant, under: str | None = None, depth: int = 0) -> None:
        if isinstance(node, Obj):
            if depth >= kernel.MAX_DEPTH:  # the kernel keeps this many open objects, no more
                raise ValueError(f"a template nests objects deeper than {kernel.MAX_DEPTH}")
            label = self.literal(key(under)) if under is not None else -1
            self.ops.append((kernel.OPEN, label, int(node.optional)))
            for member in node.members:
                self.add(member, depth=depth + 1)
            self.ops.append((kernel.CLOSE, 0, 0))
        elif isinstance(node, Member) and isinstance(node.value, Obj):
            self.add(node.value, under=node.key, depth=depth)
        elif isinstance(node, Member):
            self.leaves.append(node.value)
            self.ops.append((kernel.MEMBER, self.literal(key(node.key)), len(self.leaves) - 1))
        else:
            member = key(node.key) + orjson.dumps(node.value).decode()
            self.ops.append((kernel.LITERAL, self.literal(member), 0))


class _Leaves:
    """A chunk's leaf values where polars keeps them, as the kernel reads them: addresses of
    Arrow buffers (string views, int64 values, validity bitmaps), read in place."""

    def __init__(self, leaves: list[Leaf], columns: list[pl.Series]) -> None:
        self.table = np.zeros((max(len(leaves), 1), 5), dtype=np.int64)
        self.table[:, kernel.KIND] = kernel.ABSENT  # the kernel reads every row (prefetching)
        addresses: list[int] = []
        self.arrays: list[pa.Array] = []  # keeps the buffers alive while the kernel runs
        for i, (leaf, series) in enumerate(zip(leaves, columns, strict=True)):
            row = self.table[i]
            if series.dtype == pl.Null or series.null_count() == series.len():
                row[kernel.KIND] = kernel.ABSENT
                continue
            array = series.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
            numbers = leaf.kind in (kernel.INTEGER, kernel.ISO_SECONDS)
            expected = pa.int64() if numbers else pa.string_view()
            if array.type != expected:  # the kernel reads this layout and no other
                raise TypeError(f"leaf {i}: {array.type}, the kernel reads {expected}")
            self.arrays.append(array)
            validity, values, *data = array.buffers()
            row[kernel.KIND] = leaf.kind
            row[kernel.VALIDITY] = validity.address if validity is not None else 0
            row[kernel.VALUES] = values.address
            row[kernel.OFFSET] = array.offset
            row[kernel.BUFFERS] = len(addresses)
            addresses += [buffer.address for buffer in data]
            if leaf.kind == kernel.STRING and not any(
                kernel.any_to_escape(np.frombuffer(buffer, dtype=np.uint8)) for buffer in data
            ):  # strings over 12 bytes are in the data buffers: checked in bulk
                row[kernel.KIND] = kernel.LONG_PLAIN
        self.buffers = np.array(addresses or [0], dtype=np.int64)
        kinds = self.table[:, kernel.KIND]
        integers = int(np.isin(kinds, (kernel.INTEGER, kernel.ISO_SECONDS)).sum())
        views = int(np.isin(kinds, (kernel.TEXT, kernel.STRING, kernel.LONG_PLAIN)).sum())
        # What the leaves write in a row besides their strings' own bytes: an integer's sign
        # and 19 digits or a quoted timestamp; a string's quotes.
        self.reserve = max(20, kernel.ISO_BYTES) * integers + 2 * views

    def string_bytes(self, rows: range) -> int:
        """About how many bytes the strings of `rows` hold: their views' lengths, summed
        over a few windows of rows and scaled (never exact, never a whole pass)."""
        if len(rows) <= SAMPLED * WINDOWS:
            return int(kernel.view_bytes(self.table, rows.start, rows.stop).sum())
        step = len(rows) // WINDOWS
        starts = [rows.start + w * step for w in range(WINDOWS)]
        held = sum(int(kernel.view_bytes(self.table, s, s + SAMPLED).sum()) for s in starts)
        return held * len(rows) // (SAMPLED * WINDOWS)


SAMPLED, WINDOWS = 128, 4  # rows a window, windows a part: what sizes a part's stretch
PART_ROWS = 2_048  # the fewest rows worth a thread of their own
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Threads that write a chunk (the caller and its helpers): every core but one, which the
# push's other stages keep busy (polars reading ahead, the sending thread, the ledger's copy;
# on loopback, the partner's server too). On 2 cores a second writer only cost CPU (~0.1 s
# on 900k events) and won no time: Treasure Data 1.43 -> 1.37 s, Segment 1.42 -> 1.33 s,
# RudderStack 1.22 -> 1.19 s with one (medians of 5-7 alternating runs).
WRITERS = max(1, CORES - 1)


@functools.cache
def _helpers() -> ThreadPoolExecutor:
    """The threads that write the parts of a chunk beyond the first (the caller writes that
    one): started once, not for each chunk."""
    return ThreadPoolExecutor(max(1, WRITERS - 1), thread_name_prefix="json-writer")


def _parts(rows: int) -> list[range]:
    """The rows cut into one part per writer (parts of `PART_ROWS` at least)."""
    count = max(1, min(WRITERS, rows // PART_ROWS))
    cuts = [rows * p // count for p in range(count + 1)]
    return [range(start, stop) for start, stop in itertools.pairwise(cuts)]


def render(frame: pl.DataFrame, template: Obj) -> Encoded:
    """Each row of `frame` written as `template`, in order.

    The rows are cut into one part per writer (`WRITERS`), each written by the kernel (which
    releases the GIL) on a thread of its own into its own stretch of one buffer; the stretches
    are then moved together, so the events stay back to back. A stretch is sized from a
    sample of its rows' strings, with a margin; in the rare part that needs more, the kernel
    stops before the row that would not fit, and the rest goes into a buffer of its own."""
    program = _Program()
    program.add(template)
    columns = frame.select(
        [leaf.expr.alias(f"leaf{i}") for i, leaf in enumerate(program.leaves)]
    ).get_columns()
    leaves = _Leaves(program.leaves, columns)
    # Per row, besides strings: every literal, a comma and braces per op, the row's comma,
    # and what the leaves write (`_Leaves.reserve`).
    reserve = sum(map(len, program.literals)) + 2 * len(program.ops) + 1 + leaves.reserve
    return _write(program, leaves, _parts(frame.height), reserve)


MARGIN = 1.25  # a stretch holds this many times the strings its sample foresees


def _write(program: _Program, leaves: _Leaves, parts: list[range], reserve: int) -> Encoded:
    """The parts written on threads, then put back to back."""
    literals = b"".join(program.literals)
    literal_offsets = np.zeros(len(program.literals) + 1, dtype=np.int64)
    np.cumsum([len(text) for text in program.literals], out=literal_offsets[1:])
    program_table = np.array(program.ops, dtype=np.int64).reshape(-1, 3).T.copy()
    literal_bytes = np.frombuffer(literals or b" ", dtype=np.uint8)
    sizes = [
        len(part) * reserve + int(MARGIN * leaves.string_bytes(part)) + reserve for part in parts
    ]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = np.empty(int(starts[-1]), dtype=np.uint8)
    # Per part: its segments, (buffer, bounds of its rows there): its stretch of `out`, then
    # buffers of their own for what did not fit.
    segments: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in parts]

    def rows_into(buffer: np.ndarray, first: int, rows: int) -> tuple[np.ndarray, int]:
        bounds = np.empty(rows + 1, dtype=np.int64)
        done = kernel.write_rows(
            program_table,
            literal_bytes,
            literal_offsets,
            leaves.table,
            leaves.buffers,
            first,
            reserve,
            buffer,
            bounds,
        )
        return bounds[: done + 1], done

    def write(p: int) -> None:
        part, done, buffer = parts[p], 0, out[starts[p] : starts[p + 1]]
        while True:
            bounds, written = rows_into(buffer, part.start + done, len(part) - done)
            segments[p].append((buffer, bounds))
            done += written
            if done == len(part):
                return
            # The rest did not fit: a buffer of its own, sized from the bytes a row took so
            # far (at least twice the last one where not even one more row fitted in it).
            per_row = sum(int(b[-1]) for _, b in segments[p]) / done if done else 0
            estimate = int((len(part) - done) * per_row * MARGIN) + reserve
            buffer = np.empty(estimate if written else max(estimate, 2 * len(buffer)), np.uint8)

    helped = [_helpers().submit(write, p) for p in range(1, len(parts))]
    write(0)
    for helper in helped:
        helper.result()  # raises a helper's error here, in the caller's thread
    return _joined(out, [segment for part in segments for segment in part])


def _joined(out: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray]]) -> Encoded:
    """The segments' rows back to back: moved together within `out` where they all are in it
    (the usual case: one stretch per part), else copied into a buffer of their own."""
    if len(segments) == 1:
        buffer, bounds = segments[0]
        return Encoded(buffer[: int(bounds[-1])], bounds)
    within = all(np.may_share_memory(buffer, out) for buffer, _ in segments)
    total = sum(int(bounds[-1]) for _, bounds in segments)
    target = out if within else np.empty(total, dtype=np.uint8)
    base = out.ctypes.data
    joined, end = [np.zeros(1, dtype=np.int64)], 0
    for buffer, bounds in segments:
        size = int(bounds[-1])
        if within:  # each stretch right after the one before (never ahead of it in `out`)
            kernel.move(target, end, buffer.ctypes.data - base, size)
        else:
            target[end : end + size] = buffer[:size]
        joined.append(bounds[1:] + end)
        end += size
    return Encoded(target[:end], np.concatenate(joined))
