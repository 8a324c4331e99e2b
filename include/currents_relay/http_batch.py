"""Vectorised mapping of a clean Custom HTTP batch to canonical tables (the fast path).

`pa.array(events)` converts the batch's dicts to one Arrow struct array in C++ (the type is
inferred from every row, not the first); `user.*` and `properties.*` are then lifted to
columns per event type, exactly as `normalize.to_canonical` does row by row. Anything the fast
path cannot prove clean (a value of the wrong type, an integral float `time`, a non-object
event) returns None, and the caller maps that file row by row, with per-row reasons. Tests
prove both paths give identical tables.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from currents_relay.catalogue import ARROW_TYPES, USER_FIELDS, lookup, schema_for
from currents_relay.normalize import MAX_STRING_CHARS, RESERVED, time_to_timestamp

NESTED = ("custom_properties", "purchase_properties")
TOP_LEVEL = ("event_type", "id", "time", "user", "properties")


def _compatible(found: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_null(found) or found == wanted:
        return True
    if pa.types.is_floating(wanted):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_integer(wanted) and pa.types.is_floating(found):
        return True  # integral floats only: the safe cast below refuses 1.5
    if pa.types.is_list(wanted) and pa.types.is_list(found):
        return pa.types.is_null(found.value_type) or found.value_type == wanted.value_type
    return False


def _strip_nested(events: list[Any]) -> tuple[list[dict], list[dict[str, Any]]] | None:
    """Copy-free unless needed: take nested custom/purchase properties out of the struct inference."""
    stripped: list[dict] = []
    nested: list[dict[str, Any]] = []
    for event in events:
        if type(event) is not dict:
            return None
        properties = event.get("properties")
        if properties is not None and type(properties) is not dict:
            return None
        if type(event.get("user", {})) is not dict:
            return None
        if properties and (NESTED[0] in properties or NESTED[1] in properties):
            inner = {k: properties[k] for k in NESTED if k in properties}
            event = event | {"properties": {k: v for k, v in properties.items() if k not in NESTED}}
            nested.append(inner)
        else:
            nested.append({})
        stripped.append(event)
    return stripped, nested


def _field(struct: pa.StructArray, name: str) -> pa.Array | None:
    index = struct.type.get_field_index(name)
    return struct.field(index) if index >= 0 else None


def http_tables(
    events: list[Any], lineage: dict[str, list[Any]]
) -> tuple[dict[str, pa.Table], dict[int, list[str]]] | None:
    """Canonical tables per event type, without the rows that fail structurally, and those rows'
    reasons by position in `events`; None when the batch needs the row path."""
    prepared = _strip_nested(events)
    if prepared is None:
        return None
    stripped, nested = prepared
    try:
        batch = pa.array(stripped) if stripped else None
    except (pa.ArrowException, ValueError, TypeError, OverflowError):  # also non-UTF-8 text
        return None
    if batch is None:
        return {}, {}
    if not pa.types.is_struct(batch.type) or batch.null_count:
        return None
    for name in (f.name for f in batch.type):
        if name not in TOP_LEVEL:
            return None  # unknown top-level fields: the row path puts them in `extra`
    types = _field(batch, "event_type")
    if types is not None and not (pa.types.is_string(types.type) or pa.types.is_null(types.type)):
        return None
    time = _field(batch, "time")
    if time is not None and not (
        pa.types.is_integer(time.type)
        or pa.types.is_floating(time.type)
        or pa.types.is_null(time.type)
    ):
        return None
    type_values = types.to_pylist() if types is not None else [None] * len(batch)
    groups: dict[str, list[int]] = {}
    for offset, value in enumerate(type_values):
        groups.setdefault(value or "", []).append(offset)
    tables: dict[str, pa.Table] = {}
    reasons: dict[int, list[str]] = {}
    for event_type, offsets in groups.items():
        built = _table(
            event_type,
            batch.take(pa.array(offsets)),
            [nested[i] for i in offsets],
            {k: [v[i] for i in offsets] for k, v in lineage.items()},
            offsets,
            reasons,
            event_type_given=bool(event_type),
        )
        if built is None:
            return None
        tables[event_type] = built
    return tables, reasons


def _table(
    event_type: str,
    rows: pa.StructArray,
    nested: list[dict[str, Any]],
    lineage: dict[str, list[Any]],
    offsets: list[int],
    reasons: dict[int, list[str]],
    event_type_given: bool,
) -> pa.Table | None:
    et = lookup(event_type)
    schema = schema_for(event_type)
    n = len(rows)
    columns: dict[str, pa.Array] = {}
    unknown: list[tuple[str, pa.Array]] = []
    for section in ("user", "properties"):
        struct = _field(rows, section)
        if struct is None or pa.types.is_null(struct.type):
            continue
        if not pa.types.is_struct(struct.type):
            return None
        for index, field in enumerate(struct.type):
            values = struct.field(index)
            if struct.null_count:
                values = pc.if_else(struct.is_valid(), values, pa.scalar(None, values.type))
            name = field.name
            lifted = (
                (name in USER_FIELDS and name in et.fields)
                if section == "user"
                else (name in et.fields and name not in USER_FIELDS and name not in RESERVED)
            )
            if lifted:
                columns[name] = values
            elif values.null_count < n:
                unknown.append((f"{section}.{name}", values))
    for name in ("id", "time"):
        value = _field(rows, name)
        if value is not None:
            columns[name] = value
    out: dict[str, pa.Array] = {}
    for col in schema:
        if col.name in ("event_type", "timestamp", "extra") or col.name in lineage:
            continue
        if col.name == "properties" and et.http_properties_key:
            key = et.http_properties_key
            out[col.name] = pa.array(
                [json.dumps(p[key], ensure_ascii=False) if key in p else None for p in nested],
                pa.string(),
            )
            continue
        array = columns.get(col.name)
        if array is None:
            out[col.name] = pa.nulls(n, col.type)
            continue
        if not _compatible(array.type, col.type):
            return None
        if pa.types.is_floating(array.type) and pa.types.is_integer(col.type):
            biggest = pc.max(pc.abs(array)).as_py()
            if biggest is not None and biggest >= 2**53:
                return None  # a double cannot hold this integer exactly: type it row by row
        if array.type != col.type:
            try:
                array = array.cast(col.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        out[col.name] = array
    if any(k != et.http_properties_key for leftover in nested for k in leftover):
        return None  # a nested key this type does not own: the row path keeps it in `extra`
    rejected: set[int] = set()
    for name, array in out.items():
        if pa.types.is_string(array.type):
            too_long = pc.fill_null(pc.greater(pc.utf8_length(array), MAX_STRING_CHARS), False)
            for i in pc.indices_nonzero(too_long).to_pylist():
                reasons.setdefault(offsets[i], []).append(f"too_long:{name}")
                rejected.add(i)
    out["extra"] = _extra(unknown, n)
    out["event_type"] = pa.array([event_type if event_type_given else None] * n, pa.string())
    out["timestamp"] = time_to_timestamp(out["time"])
    for name in lineage:
        out[name] = pa.array(lineage[name], schema.field(name).type)
    table = pa.table([out[name] for name in schema.names], schema=schema)
    if rejected:  # structural failures leave the table; the caller quarantines them
        table = table.filter(pa.array([i not in rejected for i in range(n)]))
    return table


def _extra(unknown: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    if not unknown:
        return pa.nulls(n, pa.string())
    values = [array.to_pylist() for _, array in unknown]
    extra: list[str | None] = []
    for i in range(n):
        kept = {
            path: column[i]
            for (path, _), column in zip(unknown, values, strict=True)
            if column[i] is not None
        }
        extra.append(json.dumps(kept, ensure_ascii=False) if kept else None)
    return pa.array(extra, pa.string())


__all__ = ["ARROW_TYPES", "http_tables"]
