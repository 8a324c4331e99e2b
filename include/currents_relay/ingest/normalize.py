"""Canonical rows: Custom HTTP events and Avro records become one flat, typed record.

The Currents storage (Avro) record is already flat and is the canonical row. An HTTP event
maps to it by lifting `user.*` and `properties.*` to columns; `custom_properties` /
`purchase_properties` become the JSON string column `properties`, as in Avro. Anything the
catalogue does not know goes, with its HTTP path, into the JSON column `extra`, so
`to_http(to_canonical(e)) == e` for every event (design.md, Canonical record).

There is one mapping per format, column by column: `HttpLayout` says where each field of an
HTTP event goes, and `type_column` types a column against the catalogue. Arrow converts a whole
column at once; only a column Arrow refuses is typed value by value (`coerce_value`), which
names each refused value. Structural problems (wrong types, strings that are not UTF-8 or are
too long) become reason codes `<rule>:<column>`; the value rules live in `validation`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from currents_relay.catalogue import (
    ARROW_TYPES,
    LINEAGE_FIELDS,
    LINEAGE_SCHEMA,
    TIMESTAMP,
    USER_FIELDS,
    EventType,
    lookup,
    schema_for,
)

MAX_STRING_CHARS = 1_048_576  # longer strings are quarantined (`too_long:<column>`)
RESERVED = frozenset(("event_type", "id", "time", "timestamp", "extra", *LINEAGE_FIELDS))
TOP_LEVEL = frozenset(("event_type", "id", "time", "user", "properties"))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT_IN_DOUBLE = 2**53
_MAX_TIME_SECONDS = 9_000_000_000_000  # beyond this `timestamp` (microseconds) would overflow
_KIND_NAMES = {kind: name for name, kind in ARROW_TYPES.items()}  # Arrow type -> catalogue name
_EMPTY: dict[str, Any] = {}

Row = dict[str, Any]
Lineage = Mapping[str, pa.Array]  # `LINEAGE_FIELDS` -> a column, as typed in the lake
Reasons = dict[int, list[str]]  # row position -> structural reason codes


# ---- typing: one rule per catalogue type ------------------------------------------------------
def _check_string(name: str, value: str, reasons: list[str]) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        reasons.append(f"not_utf8:{name}")
        return None
    if len(value) > MAX_STRING_CHARS:
        reasons.append(f"too_long:{name}")
        return None
    return value


def coerce_value(name: str, value: Any, kind: str, reasons: list[str]) -> Any:
    """`value` as catalogue type `kind`, or None with a reason appended: strings are UTF-8
    and at most `MAX_STRING_CHARS`; integers fit int64 (an integral float is one); numbers are
    not booleans."""
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


def _fits(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether Arrow's conversion of a column of type `found` to `wanted` is `coerce_value`'s."""
    if pa.types.is_null(found) or found == wanted:
        return True
    if pa.types.is_string(wanted):
        return pa.types.is_large_string(found) or pa.types.is_string_view(found)
    if pa.types.is_floating(wanted):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_list(wanted) and (pa.types.is_list(found) or pa.types.is_large_list(found)):
        return _fits(found.value_type, wanted.value_type)
    return False


def _whole(values: list[Any] | pa.Array | pa.ChunkedArray, wanted: pa.DataType) -> pa.Array:
    """The column converted by Arrow in one call; raises where `coerce_value` would decide."""
    if isinstance(values, list):
        array = pa.array(values, wanted) if wanted == pa.string() else pa.array(values)
    else:
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not _fits(array.type, wanted):
        raise TypeError(f"{array.type} is not {wanted}")
    if pa.types.is_floating(array.type) and pa.types.is_integer(wanted):
        biggest = pc.max(pc.abs(array)).as_py()
        if biggest is not None and biggest >= _EXACT_IN_DOUBLE:
            raise ValueError("a double cannot hold this integer exactly")
    if pa.types.is_float32(array.type) and pa.types.is_float64(wanted):
        # An Avro `float` stands for the decimal it was written from: the shortest text that
        # reads back as the same float32 (3.14, not 3.140000104904175).
        array = array.cast(pa.string()).cast(wanted)
    array = array if array.type == wanted else array.cast(wanted, safe=True)
    strings = pc.list_flatten(array) if pa.types.is_list(wanted) else array
    if pa.types.is_string(strings.type) and _too_long(strings):
        raise ValueError("a string is too long")
    return array


def _too_long(strings: pa.Array) -> bool:
    """Whether a string of the array is longer than `MAX_STRING_CHARS` (counted only where
    its characters, at most its bytes, could be that many)."""
    data = strings.buffers()[2]
    if data is None or data.size <= MAX_STRING_CHARS:
        return False
    return (pc.max(pc.utf8_length(strings)).as_py() or 0) > MAX_STRING_CHARS


def type_column(
    name: str, values: list[Any] | pa.Array | pa.ChunkedArray, wanted: pa.DataType, reasons: Reasons
) -> pa.Array:
    """A column as catalogue type `wanted`. Arrow converts it whole; a column Arrow refuses is
    typed value by value, refused values becoming null with their reason in `reasons`."""
    try:
        return _whole(values, wanted)
    except (pa.ArrowException, ValueError, TypeError, OverflowError, UnicodeError):
        pass
    kind = _KIND_NAMES[wanted]
    typed = []
    for i, value in enumerate(values if isinstance(values, list) else values.to_pylist()):
        why: list[str] = []
        typed.append(coerce_value(name, value, kind, why))
        if why:
            reasons.setdefault(i, []).extend(why)
    return pa.array(typed, wanted)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def time_to_timestamp(time: pa.Array | pa.ChunkedArray) -> pa.Array:
    """UNIX seconds -> `timestamp[us, UTC]`; null where the value would overflow."""
    in_range = pc.less_equal(pc.abs(time), _MAX_TIME_SECONDS)
    micros = pc.multiply(pc.if_else(in_range, time, None), 1_000_000)
    return micros.cast(pa.int64()).cast(TIMESTAMP)


def lineage_columns(uri: str | None, offsets: list[int], ingested_at: int | None) -> Lineage:
    """The lineage columns of a source file's records at `offsets` (`ingested_at`: UNIX
    microseconds)."""
    n, kind = len(offsets), LINEAGE_SCHEMA.field
    return {
        "source_uri": pa.repeat(pa.scalar(uri, kind("source_uri").type), n),
        "source_offset": pa.array(offsets, kind("source_offset").type),
        "ingested_at": pa.repeat(pa.scalar(ingested_at, kind("ingested_at").type), n),
    }


def _table(
    event_type: str | None, columns: dict[str, pa.Array], n: int, lineage: Lineage
) -> pa.Table:
    """The lake table of one event type from its typed columns and lineage."""
    schema = schema_for(event_type or "")
    columns["event_type"] = pa.repeat(pa.scalar(event_type, pa.string()), n)
    columns["timestamp"] = time_to_timestamp(columns["time"])
    columns |= {name: lineage[name] for name in LINEAGE_FIELDS}
    return pa.table(
        [columns[c.name] if c.name in columns else pa.nulls(n, c.type) for c in schema],
        schema=schema,
    )


# ---- Custom HTTP --------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpLayout:
    """Where each field of one event type sits in a Custom HTTP event."""

    event_type: EventType
    user: frozenset[str]  # `user.*` lifted to columns
    properties: frozenset[str]  # `properties.*` lifted to columns
    json_key: str | None  # `properties.<key>` kept as JSON text in the `properties` column
    names: dict[str, str]  # column -> its HTTP name, where the two differ
    columns: dict[str, str]  # ... and back: HTTP name -> column

    def column(self, key: str) -> str:
        """The column of an HTTP field name."""
        return self.columns.get(key, key)

    @property
    def known_properties(self) -> frozenset[str]:
        return self.properties | {self.json_key} if self.json_key else self.properties

    def plain(self, event: dict, user: dict, properties: dict) -> bool:
        """Whether the catalogue knows every field of `event` (its `user` and `properties`
        being the objects given, or empty where not an object)."""
        return (
            event.keys() <= TOP_LEVEL
            and user.keys() <= self.user
            and properties.keys() <= self.known_properties
            and (user or event.get("user") is None or event["user"] == {})
            and (properties or event.get("properties") is None or event["properties"] == {})
        )

    def extra(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The fields the catalogue does not know, by HTTP path (nulls are absent)."""
        kept: dict[str, Any] = {}
        for key, value in event.items():
            if key in ("user", "properties") and type(value) is dict:
                known = self.user if key == "user" else self.known_properties
                for name, inner in value.items():
                    if name not in known and inner is not None:
                        kept[f"{key}.{name}"] = inner
            elif key not in ("event_type", "id", "time") and value is not None:
                kept[key] = value
        return kept


@cache
def layout(event_type: str) -> HttpLayout:
    et = lookup(event_type)
    lifted = [et.http_names.get(n, n) for n in et.fields if n not in RESERVED and n != "properties"]
    return HttpLayout(
        event_type=et,
        user=frozenset(n for n in lifted if n in USER_FIELDS),
        properties=frozenset(n for n in lifted if n not in USER_FIELDS),
        json_key=et.http_properties_key,
        names=et.http_names,
        columns={http: column for column, http in et.http_names.items()},
    )


def _sections(events: list[dict], key: str) -> tuple[list[dict], bool]:
    """Each event's `key` object (empty where absent or not an object), and whether every
    event's is an object or absent."""
    values = [event.get(key) for event in events]
    if _all(values, dict):
        return values, True
    return [v if type(v) is dict else _EMPTY for v in values], _all(values, dict, type(None))


def _strings(events: list[dict], user: list[str], properties: list[str]) -> dict[str, pa.Array]:
    """The string columns `id`, `user.<user>` and `properties.<properties>`, converted by Arrow
    in one pass over the events (a nested struct); empty where a value is not clean text (each
    column is then typed on its own)."""
    string = pa.string()
    kind = pa.struct(
        [
            ("id", string),
            ("user", pa.struct([(name, string) for name in user])),
            ("properties", pa.struct([(name, string) for name in properties])),
        ]
    )
    try:
        struct = pa.array(events, kind)
    except (pa.ArrowException, UnicodeError):
        return {}
    identifier, users, props = struct.flatten()  # a null object's fields are null
    columns = {"id": identifier}
    columns |= dict(zip(user, users.flatten(), strict=True))
    columns |= dict(zip(properties, props.flatten(), strict=True))
    if any(_too_long(array) for array in columns.values()):
        return {}
    return columns


def http_group(
    event_type: str | None, events: list[dict], lineage: Lineage
) -> tuple[pa.Table, Reasons]:
    """The canonical table of HTTP events of one event type (every row, refused values null)
    and the structural reasons by row."""
    shape = layout(event_type or "")
    schema = schema_for(event_type or "")
    n = len(events)
    users, users_objects = _sections(events, "user")
    properties, properties_objects = _sections(events, "properties")
    all_users, all_properties = (
        set(chain.from_iterable(users)),
        set(chain.from_iterable(properties)),
    )
    in_users, in_properties = all_users & shape.user, all_properties & shape.properties
    # Every event plain (no field for `extra`) unless a key or a section says otherwise.
    all_plain = (
        users_objects
        and properties_objects
        and set(chain.from_iterable(events)) <= TOP_LEVEL
        and all_users <= shape.user
        and all_properties <= shape.known_properties
    )
    reasons: Reasons = {}
    strings = [shape.names.get(c.name, c.name) for c in schema if c.type == pa.string()]
    columns = _strings(
        events,
        [key for key in strings if key in in_users],
        [key for key in strings if key in in_properties],
    )
    columns = {shape.column(key): array for key, array in columns.items()}
    for col in schema:
        name = col.name
        key = shape.names.get(name, name)
        if name in columns or name in RESERVED - {"id", "time", "extra"}:
            continue
        if name in ("id", "time"):
            values = [e.get(name) for e in events]
        elif key in in_users:
            values = [u.get(key) for u in users]
        elif key in in_properties:
            values = [p.get(key) for p in properties]
        elif name == "properties" and shape.json_key:
            key = shape.json_key
            values = [_json(p[key]) if key in p else None for p in properties]
        elif name == "extra" and all_plain:
            continue
        elif name == "extra":
            values = []
            for event, user, props in zip(events, users, properties, strict=True):
                kept = None if shape.plain(event, user, props) else shape.extra(event)
                values.append(_json(kept) if kept else None)
        else:
            continue
        columns[name] = type_column(name, values, col.type, reasons)
    return _table(event_type, columns, n, lineage), reasons


def _event_problem(event: Any) -> str | None:
    """Why an HTTP event cannot be grouped by its event type, if it cannot."""
    if type(event) is not dict:
        return "not_an_object:event"
    event_type = event.get("event_type")
    if event_type is not None and type(event_type) is not str:
        return "type_mismatch:event_type:string"
    return None


def _groups(events: list[Any]) -> tuple[dict[str | None, list[int]], Reasons]:
    """Positions of the events by event type (None: no type), and the events refused whole."""
    groups: dict[str | None, list[int]] = {}
    rejected: Reasons = {}
    for offset, event in enumerate(events):
        problem = _event_problem(event)
        if problem:
            rejected[offset] = [problem]
        else:
            groups.setdefault(event.get("event_type") or None, []).append(offset)
    return groups, rejected


def _all(values: list[Any], *kinds: type) -> bool:
    """Whether every value is exactly of one of `kinds` (a C-speed pass)."""
    return set(map(type, values)) <= set(kinds)


def http_tables(events: list[Any], lineage: Lineage) -> tuple[dict[str, pa.Table], Reasons]:
    """Canonical tables per event type of a batch of HTTP events, without the events refused
    for a structural reason, and those events' reasons by position in `events`."""
    groups, rejected = _groups(events)
    tables: dict[str, pa.Table] = {}
    for event_type, offsets in groups.items():
        whole = len(offsets) == len(events)
        taken = pa.array(offsets, pa.int64())
        table, reasons = http_group(
            event_type,
            events if whole else [events[i] for i in offsets],
            lineage if whole else {name: array.take(taken) for name, array in lineage.items()},
        )
        for i, why in reasons.items():
            rejected[offsets[i]] = why
        if reasons:
            table = table.filter(pa.array([i not in reasons for i in range(len(offsets))]))
        tables[event_type or ""] = table
    return tables, dict(sorted(rejected.items()))


def to_canonical(event: Any) -> tuple[Row, list[str]]:
    """One Custom HTTP event as a canonical row (refused values null) and its reason codes."""
    problem = _event_problem(event)
    reasons = [problem] if problem else []
    if type(event) is not dict:
        return {"event_type": None, "id": None, "time": None, "extra": None}, reasons
    if problem:  # mapped as an event without a type, to name its other problems too
        event = event | {"event_type": None}
    event_type = event.get("event_type")
    table, found = http_group(event_type or None, [event], lineage_columns(None, [0], None))
    row = {k: v for k, v in table.to_pylist()[0].items() if k not in LINEAGE_FIELDS}
    del row["timestamp"]
    return row, reasons + found.get(0, [])


# ---- Avro -------------------------------------------------------------------------------------
def avro_table(event_type: str, decoded: pa.Table, lineage: Lineage) -> tuple[pa.Table, Reasons]:
    """A decoded Avro table as the lake table of its event type (every row, refused values
    null) and the structural reasons by row; columns the catalogue does not know go to
    `extra`."""
    schema = schema_for(event_type)
    n = decoded.num_rows
    reasons: Reasons = {}
    columns: dict[str, pa.Array] = {}
    for col in schema:
        if col.name in decoded.column_names and col.name not in RESERVED - {"id", "time"}:
            columns[col.name] = type_column(col.name, decoded[col.name], col.type, reasons)
    unknown = [
        c for c in decoded.column_names if c not in schema.names or c in RESERVED - {"id", "time"}
    ]
    if unknown:
        extra = []
        for record in decoded.select(unknown).to_pylist():
            kept = {k: v for k, v in record.items() if v is not None}
            extra.append(_json(kept) if kept else None)
        columns["extra"] = type_column("extra", extra, pa.string(), reasons)
    return _table(event_type, columns, n, lineage), reasons


# ---- back to the source formats -----------------------------------------------------------------
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
            shape = layout(event_type or "")
            if name == "properties" and shape.json_key:
                properties[shape.json_key] = json.loads(value)
                continue
            properties[shape.names.get(name, name)] = value
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
