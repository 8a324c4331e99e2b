"""A partner's event shape as a template, written for a whole chunk by `json_kernel`.

A template is an `Obj` of members: `Member(key, leaf or Obj)` and `Constant(key, value)`.
A *leaf* is a polars expression
giving each row's value (null: the member is left out, as a dict-per-row encoder leaves out
what it never sets) and how the kernel writes it: integers in decimal; strings in quotes,
escaped as orjson escapes them (copied as they are when the chunk's values hold no quote,
backslash or control byte: checked on the column's buffer at once); anything else as JSON
text polars writes (`struct.json_encode`).

`render` evaluates a chunk's leaves in one polars `select`, hands their Arrow buffers to the
kernel and returns the chunk's events, written back to back in one buffer. The row path
(`Partner.wire_event` + orjson) stays the definition: tests prove both write the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from currents_relay.delivery import json_kernel as kernel
from currents_relay.delivery.batching import Encoded

STRING = -1  # a leaf of strings: QUOTED or ESCAPED, decided per chunk from its bytes


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
        return Leaf(expr, STRING)
    if kind == pl.Boolean or kind == pl.UInt64:
        return Leaf(expr.cast(pl.String))
    encoded = pl.struct(expr.alias("v")).struct.json_encode()  # `{"v":value}`
    return Leaf(
        pl.when(expr.is_not_null()).then(encoded.str.strip_prefix('{"v":').str.strip_suffix("}"))
    )


def string(expr: pl.Expr) -> Leaf:
    """A leaf of strings (written in quotes)."""
    return Leaf(expr.cast(pl.String), STRING)


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


def wire_chunk_ok(frame: pl.DataFrame, integer_time: bool = False) -> bool:
    """Whether a chunk can be written from a template: one event type, no `extra` (fields the
    catalogue does not know: the row path writes them) and, if asked, integer `time`."""
    if "extra" in frame.columns and frame["extra"].null_count() < frame.height:
        return False
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

    def add(self, node: Obj | Member | Constant, under: str | None = None) -> None:
        if isinstance(node, Obj):
            label = self.literal(key(under)) if under is not None else -1
            self.ops.append((kernel.OPEN, label, int(node.optional)))
            for member in node.members:
                self.add(member)
            self.ops.append((kernel.CLOSE, 0, 0))
        elif isinstance(node, Member) and isinstance(node.value, Obj):
            self.add(node.value, under=node.key)
        elif isinstance(node, Member):
            self.leaves.append(node.value)
            self.ops.append((kernel.MEMBER, self.literal(key(node.key)), len(self.leaves) - 1))
        else:
            member = key(node.key) + orjson.dumps(node.value).decode()
            self.ops.append((kernel.LITERAL, self.literal(member), 0))


class _Leaves:
    """A chunk's leaf values as the kernel reads them."""

    def __init__(self, leaves: list[Leaf], columns: list[pl.Series], rows: int) -> None:
        count = max(len(leaves), 1)
        self.kinds = np.zeros(count, dtype=np.int64)
        self.valid = np.zeros((count, rows), dtype=np.uint8)
        self.offsets = np.zeros((count, rows + 1), dtype=np.int64)
        self.integers = np.zeros((count, rows), dtype=np.int64)
        self.text_bytes = 0  # a bound on the bytes the text leaves write
        pieces: list[np.ndarray] = []
        base = 0
        for i, (leaf, series) in enumerate(zip(leaves, columns, strict=True)):
            self.kinds[i] = leaf.kind
            if series.dtype == pl.Null:
                continue  # missing throughout
            self.valid[i] = series.is_not_null().to_numpy()
            if leaf.kind == kernel.INTEGER:
                self.integers[i] = series.fill_null(0).to_numpy()
                continue
            values = pa.chunked_array([series.to_arrow()]).cast(pa.large_string()).combine_chunks()
            bounds = np.frombuffer(values.buffers()[1], dtype=np.int64)
            bounds = bounds[values.offset : values.offset + rows + 1]
            start, stop = int(bounds[0]), int(bounds[-1])
            data = np.frombuffer(values.buffers()[2] or b"", dtype=np.uint8)[start:stop]
            self.offsets[i] = bounds - start + base
            pieces.append(data)
            base += len(data)
            if leaf.kind == STRING:
                self.kinds[i] = kernel.QUOTED if _plain(data) else kernel.ESCAPED
            growth = kernel.ESCAPE_GROWTH if self.kinds[i] == kernel.ESCAPED else 1
            self.text_bytes += growth * len(data)
        self.data = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)


def _plain(data: np.ndarray) -> bool:
    """Whether string bytes need no escaping in JSON: no `"`, `\\` or byte < 0x20 (UTF-8 never
    uses those bytes inside a multi-byte character)."""
    if not len(data):
        return True
    if data.min() < 0x20:
        return False
    raw = data.tobytes()
    return b'"' not in raw and b"\\" not in raw


def render(frame: pl.DataFrame, template: Obj) -> Encoded:
    """Each row of `frame` written as `template`, in order."""
    rows = frame.height
    program = _Program()
    program.add(template)
    columns = frame.select(
        [leaf.expr.alias(f"leaf{i}") for i, leaf in enumerate(program.leaves)]
    ).get_columns()
    leaves = _Leaves(program.leaves, columns, rows)
    literals = b"".join(program.literals)
    literal_offsets = np.zeros(len(program.literals) + 1, dtype=np.int64)
    np.cumsum([len(text) for text in program.literals], out=literal_offsets[1:])
    # Per row: every literal, a comma and braces per op, an integer's 20 digits and sign or a
    # string's quotes per leaf, and the row's comma; then the leaves' own bytes.
    per_row = len(literals) + 2 * len(program.ops) + 21 * len(program.leaves) + 1
    out = np.empty(rows * per_row + leaves.text_bytes, dtype=np.uint8)
    bounds = np.empty(rows + 1, dtype=np.int64)
    kernel.write_rows(
        np.array(program.ops, dtype=np.int64).reshape(-1, 3).T.copy(),
        np.frombuffer(literals or b" ", dtype=np.uint8),
        literal_offsets,
        leaves.kinds,
        leaves.valid,
        leaves.data,
        leaves.offsets,
        leaves.integers,
        out,
        bounds,
    )
    return Encoded(out[: bounds[-1]], bounds)
