"""Canonical rows: Custom HTTP events and Avro records become one flat, typed record.

The Currents storage (Avro) record is already flat and is the canonical row. An HTTP event
maps to it by lifting `user.*` and `properties.*` to columns; `custom_properties` /
`purchase_properties` become the JSON string column `properties`, as in Avro. Anything the
catalogue does not know goes, with its HTTP path, into the JSON column `extra`, so
`to_http(to_canonical(e)) == e` for every event (design.md, Canonical record).

Structural problems (wrong types, strings that are not UTF-8 or are too long) are found here
and returned as reason codes `<rule>:<column>`; the value rules live in `validation`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from currents_relay.catalogue import (
    ARROW_TYPES,
    LINEAGE_FIELDS,
    TIMESTAMP,
    USER_FIELDS,
    EventType,
    lookup,
    schema_for,
)

MAX_STRING_CHARS = 1_048_576  # longer strings are quarantined (`too_long:<column>`)
RESERVED = frozenset(("event_type", "id", "time", "timestamp", "extra", *LINEAGE_FIELDS))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_TIME_SECONDS = 9_000_000_000_000  # beyond this `timestamp` (microseconds) would overflow

Row = dict[str, Any]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_string(name: str, value: str, reasons: list[str]) -> str | None:
    if not _is_utf8(value):
        reasons.append(f"not_utf8:{name}")
        return None
    if len(value) > MAX_STRING_CHARS:
        reasons.append(f"too_long:{name}")
        return None
    return value


def coerce_value(name: str, value: Any, kind: str, reasons: list[str]) -> Any:
    """Return `value` as catalogue type `kind`, or None with a reason appended."""
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return _check_string(name, value, reasons)
    elif kind == "int64":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
            reasons.append(f"out_of_range:{name}:{kind}")
            return None
    elif kind == "float64":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif (
        kind == "list<string>"
        and isinstance(value, list)
        and all(item is None or isinstance(item, str) for item in value)
    ):
        return [item if item is None else _check_string(name, item, reasons) for item in value]
    reasons.append(f"type_mismatch:{name}:{kind}")
    return None


def dump_json(value: Any, name: str, reasons: list[str]) -> str | None:
    """JSON text of a nested value; a value holding non-UTF-8 text is refused."""
    text = json.dumps(value, ensure_ascii=False)
    return _check_string(name, text, reasons)


def coerce_flat(
    flat: Mapping[str, Any], event_type: EventType, extra: dict[str, Any]
) -> tuple[Row, list[str]]:
    """Type a flat record against the catalogue; unknown keys join `extra`."""
    reasons: list[str] = []
    row: Row = {}
    for name, value in flat.items():
        kind = event_type.fields.get(name)
        if kind is None or name in ("event_type", "timestamp", "extra"):
            if name != "event_type" and value is not None:
                extra[name] = value
            continue
        row[name] = coerce_value(name, value, kind, reasons)
    row["extra"] = dump_json(extra, "extra", reasons) if extra else None
    return row, reasons


def to_canonical(event: Any) -> tuple[Row, list[str]]:
    """Map one Custom HTTP event to a canonical row and its structural reason codes."""
    if not isinstance(event, dict):
        return {"event_type": None, "id": None, "time": None, "extra": None}, [
            "not_an_object:event"
        ]
    reasons: list[str] = []
    raw_type = event.get("event_type")
    if raw_type is not None and not isinstance(raw_type, str):
        reasons.append("type_mismatch:event_type:string")
        raw_type = None
    raw_type = raw_type or None  # an empty event type is a missing one
    event_type = lookup(raw_type or "")
    flat: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in event.items():
        if key in ("user", "properties") and isinstance(value, dict):
            for name, inner in value.items():
                _lift(key, name, inner, event_type, flat, extra, reasons)
        elif key in ("event_type", "id", "time"):
            flat[key] = value
        elif value is not None:  # nulls are absent, in `extra` as in columns
            extra[key] = value
    row, more = coerce_flat(flat, event_type, extra)
    row["event_type"] = raw_type
    return row, reasons + more


def _lift(
    section: str,
    name: str,
    value: Any,
    event_type: EventType,
    flat: dict,
    extra: dict,
    reasons: list[str],
) -> None:
    if section == "user":
        if name in USER_FIELDS and name in event_type.fields:
            flat[name] = value
        elif value is not None:
            extra[f"user.{name}"] = value
    elif name == event_type.http_properties_key:
        flat["properties"] = dump_json(value, "properties", reasons)
    elif name in event_type.fields and name not in USER_FIELDS and name not in RESERVED:
        flat[name] = value
    elif value is not None:
        extra[f"properties.{name}"] = value


# Where `to_http` puts a canonical column: 0 nowhere (reserved), 1 `user`, else `properties`.
_HTTP_PLACE = dict.fromkeys(RESERVED, 0) | dict.fromkeys(USER_FIELDS, 1)


def to_http(row: Mapping[str, Any]) -> dict[str, Any]:
    """The exact inverse of `to_canonical` (lineage and derived columns ignored, nulls omitted)."""
    event_type = row.get("event_type")
    event: dict[str, Any] = {"event_type": event_type}
    user: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            continue
        place = _HTTP_PLACE.get(name, 2)
        if place == 2:
            if name == "properties":
                nested = lookup(event_type or "").http_properties_key
                if nested:
                    properties[nested] = json.loads(value)
                    continue
            properties[name] = value
        elif place == 1:
            user[name] = value
    for name in ("id", "time"):
        if row.get(name) is not None:
            event[name] = row[name]
    event["user"] = user
    event["properties"] = properties
    extra = row.get("extra")
    if extra:
        add_extra(event, extra)
    return event


def add_extra(event: dict[str, Any], extra: str | None) -> None:
    """Put the fields the catalogue does not know (`extra`, as stored) back into an HTTP
    event (`add_fields`)."""
    add_fields(event, json.loads(extra) if extra else {})


def add_fields(event: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Put unknown fields, by HTTP path, into an HTTP event: `user.x` and `properties.x` into
    their objects, others at the top level."""
    for path, value in fields.items():
        section, _, name = path.partition(".")
        if section in ("user", "properties") and name:
            event[section][name] = value
        else:
            event[path] = value


def to_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro record a canonical row came from (nulls omitted, unknown fields restored)."""
    record = {
        k: v for k, v in row.items() if k in ("id", "time") or (v is not None and k not in RESERVED)
    }
    if row.get("extra"):
        record.update(json.loads(row["extra"]))
    return record


def _longest(strings: pa.Array | pa.ChunkedArray) -> int:
    """Characters in the longest string (0 when there are none): one pass, no mask."""
    return pc.max(pc.utf8_length(strings)).as_py() or 0


def time_to_timestamp(time: pa.Array | pa.ChunkedArray) -> pa.Array:
    """UNIX seconds -> `timestamp[us, UTC]`; null where the value would overflow."""
    in_range = pc.less_equal(pc.abs(time), _MAX_TIME_SECONDS)
    micros = pc.multiply(pc.if_else(in_range, time, None), 1_000_000)
    return micros.cast(pa.int64()).cast(TIMESTAMP)


def rows_to_table(
    event_type: str, rows: list[Row], lineage: Mapping[str, Iterable[Any]]
) -> pa.Table:
    """Build the lake table of one event type from canonical rows and lineage columns."""
    schema = schema_for(event_type)
    columns: dict[str, Any] = {}
    for col in schema:
        if col.name == "timestamp":
            continue
        if col.name in LINEAGE_FIELDS:
            columns[col.name] = pa.array(lineage[col.name], type=col.type)
        else:
            columns[col.name] = pa.array([row.get(col.name) for row in rows], type=col.type)
    columns["timestamp"] = time_to_timestamp(columns["time"])
    return pa.table([columns[name] for name in schema.names], schema=schema)


def conform_table(
    event_type: str, table: pa.Table, lineage: Mapping[str, Any]
) -> tuple[pa.Table, list[list[str]]] | None:
    """Cast a decoded Avro table to the lake schema, vectorised.

    Returns the table and per-row structural reasons (empty lists for clean rows), or None if
    a column cannot be cast as a whole (the caller then types the file row by row).
    """
    schema = schema_for(event_type)
    n = table.num_rows
    columns: dict[str, pa.Array] = {}
    reasons: list[list[str]] = [[] for _ in range(n)]
    for col in schema:
        if col.name in ("event_type", "timestamp", "extra") or col.name in LINEAGE_FIELDS:
            continue
        if col.name not in table.column_names:
            columns[col.name] = pa.nulls(n, col.type)
            continue
        try:
            array = table[col.name].cast(col.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if pa.types.is_string(col.type) and _longest(array) > MAX_STRING_CHARS:
            too_long = pc.fill_null(pc.greater(pc.utf8_length(array), MAX_STRING_CHARS), False)
            for i in pc.indices_nonzero(too_long).to_pylist():
                reasons[i].append(f"too_long:{col.name}")
            array = pc.if_else(too_long, pa.scalar(None, col.type), array)
        columns[col.name] = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    unknown = [
        c
        for c in table.column_names
        if c not in schema.names or c in ("event_type", "timestamp", "extra")
    ]
    extra: list[str | None] = [None] * n
    if unknown:
        for i, rec in enumerate(table.select(unknown).to_pylist()):
            kept = {k: v for k, v in rec.items() if v is not None}
            extra[i] = json.dumps(kept, ensure_ascii=False) if kept else None
    columns["extra"] = pa.array(extra, pa.string())
    columns["event_type"] = pa.array([event_type] * n, pa.string())
    columns["timestamp"] = time_to_timestamp(columns["time"])
    for name in LINEAGE_FIELDS:
        columns[name] = pa.array(lineage[name], type=schema.field(name).type)
    return pa.table([columns[name] for name in schema.names], schema=schema), reasons


def records_to_table(
    event_type: str, records: list[dict[str, Any]], lineage: Mapping[str, Any]
) -> tuple[pa.Table, list[list[str]]]:
    """Row-by-row typing of flat records (the slow path for files that do not cast whole)."""
    et = lookup(event_type)
    rows, reasons = [], []
    for record in records:
        row, why = coerce_flat(record, et, {})
        row["event_type"] = event_type
        rows.append(row)
        reasons.append(why)
    return rows_to_table(event_type, rows, lineage), reasons


__all__ = [
    "ARROW_TYPES",
    "add_extra",
    "add_fields",
    "coerce_flat",
    "conform_table",
    "records_to_table",
    "rows_to_table",
    "to_canonical",
    "to_http",
    "to_record",
]
