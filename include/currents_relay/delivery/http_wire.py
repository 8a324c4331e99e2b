"""Braze's Custom HTTP event shape, encoded by polars for a whole chunk at once (fast path).

`normalize.to_http` builds one dict per row, leaving nulls out, and a JSON encoder writes it.
Here every column of a chunk becomes its `"name":value` member in Rust (null where the value
is null), and each object joins its non-null members: `{"event_type", "id", "time", "user":
{...}, "properties": {...}}` with exactly the keys `to_http` writes, the stored JSON of
custom or purchase properties spliced in as it is. Rows with `extra` (fields the catalogue does not
know) return None: the caller takes the row path. Tests prove both give the same events.
Members and values are written as `delivery.json_columns` writes them.
"""

from __future__ import annotations

import polars as pl

from currents_relay.catalogue import USER_FIELDS, lookup
from currents_relay.delivery.json_columns import (
    column_member,
    json_object,
    member,
    members,
    rows_as_bytes,
    wire_chunk_ok,
)
from currents_relay.normalize import RESERVED


def http_json(frame: pl.DataFrame) -> list[bytes] | None:
    """Each row of one event type's chunk as its Custom HTTP event (JSON bytes), in order."""
    if frame.height == 0:
        return []
    if not wire_chunk_ok(frame):
        return None
    json_key = lookup(frame["event_type"][0]).http_properties_key
    head = ["event_type"] + [c for c in ("id", "time") if c in frame.columns]
    user = [c for c in frame.columns if c in USER_FIELDS and c not in RESERVED]
    raw = "properties" if json_key and "properties" in frame.columns else None
    properties = [
        c for c in frame.columns if c not in RESERVED and c not in USER_FIELDS and c != raw
    ]
    property_members = [column_member(frame[c]) for c in properties]
    if raw:  # stored JSON, spliced in as it is
        property_members.append(member(json_key, pl.col(raw)))
    encoded = pl.concat_str(
        [
            pl.lit("{"),
            members([column_member(frame[c]) for c in head]),
            pl.lit(',"user":'),
            json_object([column_member(frame[c]) for c in user]),
            pl.lit(',"properties":'),
            json_object(property_members),
            pl.lit("}"),
        ]
    )
    return rows_as_bytes(frame, encoded)
