"""Braze's Custom HTTP event shape, written for a whole chunk at once (fast path).

`normalize.to_http` builds one dict per row, leaving nulls out, and a JSON encoder writes it.
Here the same shape is a `json_template`: `{"event_type", "id", "time", "user": {...},
"properties": {...}}` with exactly the keys `to_http` writes, the stored JSON of custom or
purchase properties spliced in as it is. Rows with `extra` (fields the catalogue does not
know) return None: the caller takes the row path. Tests prove both give the same events.
"""

from __future__ import annotations

import polars as pl

from currents_relay.catalogue import USER_FIELDS, lookup
from currents_relay.delivery import json_template as jt
from currents_relay.delivery.batching import Encoded
from currents_relay.normalize import RESERVED


def http_json(frame: pl.DataFrame) -> Encoded | None:
    """Each row of one event type's chunk as its Custom HTTP event (JSON bytes), in order."""
    if frame.height == 0:
        return Encoded.of([])
    if not jt.wire_chunk_ok(frame):
        return None
    json_key = lookup(frame["event_type"][0]).http_properties_key
    head = ["event_type"] + [c for c in ("id", "time") if c in frame.columns]
    user = [c for c in frame.columns if c in USER_FIELDS and c not in RESERVED]
    raw = "properties" if json_key and "properties" in frame.columns else None
    properties: list[jt.Member | jt.Constant] = [
        jt.column(frame, c)
        for c in frame.columns
        if c not in RESERVED and c not in USER_FIELDS and c != raw
    ]
    if raw:  # stored JSON, spliced in as it is
        properties.append(jt.Member(json_key, jt.text(pl.col(raw))))
    event = jt.Obj(
        [
            *(jt.column(frame, c) for c in head),
            jt.Member("user", jt.Obj([jt.column(frame, c) for c in user])),
            jt.Member("properties", jt.Obj(properties)),
        ]
    )
    return jt.render(frame, event)
