"""JSON written a column at a time by polars: the pieces partner encoders are built from.

A *member* is the expression `"key":value` for each row, null where the value is null, so an
object that joins its members with `ignore_nulls` leaves nulls out, as a dict-per-row
encoder does. Values are written by polars' JSON encoder (`struct.json_encode`, ~60 ns a
value) only where plain concatenation could be wrong: integers and booleans are their own
JSON, and a string column whose bytes hold no quote, backslash or control character (checked
on the column's buffer at once, a few GB/s) is its value in quotes.
"""

from __future__ import annotations

import numpy as np
import orjson
import polars as pl
import pyarrow as pa


def wire_chunk_ok(frame: pl.DataFrame, integer_time: bool = False) -> bool:
    """Whether a chunk can be encoded a column at a time: one event type, no `extra` (fields
    the catalogue does not know: the row path writes them) and, if asked, integer `time`."""
    if "extra" in frame.columns and frame["extra"].null_count() < frame.height:
        return False
    if "event_type" not in frame.columns or frame["event_type"].null_count():
        return False
    if integer_time and not frame.schema.get("time", pl.Null).is_integer():
        return False
    return frame["event_type"].n_unique() == 1


def key(name: str) -> str:
    """`"name":` as orjson writes it."""
    return orjson.dumps(name).decode() + ":"


def literal(value: object) -> pl.Expr:
    """A constant JSON value (as orjson writes it)."""
    return pl.lit(orjson.dumps(value).decode())


def value(column: pl.Series) -> pl.Expr:
    """Each row's value of `column` as JSON text, null where it is null."""
    name, kind = column.name, column.dtype
    if kind.is_integer() or kind == pl.Boolean:
        return pl.col(name).cast(pl.String)
    if kind == pl.String and plain_strings(column):
        return pl.concat_str([pl.lit('"'), pl.col(name), pl.lit('"')])
    encoded = pl.struct(pl.col(name)).struct.json_encode()
    text = encoded.str.strip_prefix("{" + key(name))  # `{"name":value}` -> `value}`
    return pl.when(pl.col(name).is_not_null()).then(text.str.strip_suffix("}"))


def member(name: str, json_value: pl.Expr) -> pl.Expr:
    """`"name":value`, null where the value is null (concat_str propagates nulls)."""
    return pl.concat_str([pl.lit(key(name)), json_value])


def column_member(column: pl.Series, name: str | None = None) -> pl.Expr:
    """`"name":value` of a column (under its own name unless `name` is given)."""
    return member(name or column.name, value(column))


def members(parts: list[pl.Expr]) -> pl.Expr:
    """The non-null members joined with commas ("" when there are none)."""
    if not parts:
        return pl.lit("")
    return pl.concat_str(parts, separator=",", ignore_nulls=True).fill_null("")


def json_object(parts: list[pl.Expr]) -> pl.Expr:
    """`{...}` of the non-null members (`{}` when there are none)."""
    return pl.concat_str([pl.lit("{"), members(parts), pl.lit("}")])


def optional_object(parts: list[pl.Expr]) -> pl.Expr:
    """`{...}` of the non-null members, null when there are none (the member is left out)."""
    inner = members(parts)
    return pl.when(inner != "").then(pl.concat_str([pl.lit("{"), inner, pl.lit("}")]))


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


def rows_as_bytes(frame: pl.DataFrame, encoded: pl.Expr) -> list[bytes]:
    return frame.select(encoded.cast(pl.Binary)).to_series().to_list()


def plain_strings(strings: pl.Series) -> bool:
    """Whether no value of a string column needs escaping in JSON: no `"`, `\\` or byte < 0x20
    (UTF-8 never uses those bytes inside a multi-byte character)."""
    for chunk in pa.chunked_array([strings.to_arrow()]).cast(pa.large_string()).chunks:
        data = chunk.buffers()[2]
        if not len(chunk) or data is None:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
        start, stop = offsets[chunk.offset], offsets[chunk.offset + len(chunk)]
        values = memoryview(data)[start:stop]
        if not values:
            continue
        if np.frombuffer(values, dtype=np.uint8).min() < 0x20:
            return False
        raw = bytes(values)
        if b'"' in raw or b"\\" in raw:
            return False
    return True
