"""Braze's Custom HTTP event shape, written for a whole chunk at once (fast path).

`normalize.to_http` builds one dict per row, leaving nulls out, and a JSON encoder writes it.
Here the same shape is a `json_template`: `{"event_type", "id", "time", "user": {...},
"properties": {...}}` with exactly the keys `to_http` writes, the stored JSON of custom or
purchase properties spliced in as it is. A chunk with `extra` (fields the catalogue does not
know, ~1% of rows) is written from the template without it, then each event read back,
given its unknown fields as `to_http` gives them (`add_extra`) and written again by orjson:
~4x faster than building each row's dict. Tests prove both give the same events.
"""

from __future__ import annotations

import orjson
import polars as pl

from currents_relay.catalogue import USER_FIELDS, lookup
from currents_relay.delivery import json_template as jt
from currents_relay.delivery.batching import Encoded
from currents_relay.normalize import RESERVED, add_extra


def http_json(frame: pl.DataFrame) -> Encoded | None:
    """Each row of one event type's chunk as its Custom HTTP event (JSON bytes), in order, or
    None (the row path)."""
    if frame.height == 0:
        return Encoded.of([])
    if "extra" in frame.columns and frame["extra"].null_count() < frame.height:
        return _with_extra(frame)
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


def _with_extra(frame: pl.DataFrame) -> Encoded | None:
    """`http_json` of rows with `extra`: each event written without it, read back and given
    its unknown fields. None (the row path, which stays the definition) where orjson cannot
    read or write an event as `to_http` and orjson do (NaN, integers beyond 64 bits)."""
    usual = http_json(frame.drop("extra"))
    if usual is None:
        return None
    events = []
    try:
        for written, extra in zip(usual, frame["extra"].to_list(), strict=True):
            event = orjson.loads(written)
            add_extra(event, extra)
            events.append(orjson.dumps(event))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return Encoded.of(events)
