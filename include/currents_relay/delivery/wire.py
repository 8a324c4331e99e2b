"""A chunk of lake rows as a partner's wire events: the one path every partner takes.

Each row becomes a dict of its columns (a null is None: every `wire_event` leaves nulls
out), the destination's PII policy is applied, the partner's `wire_event` (its one
definition of the event shape) maps it, and orjson writes it; the few values orjson refuses (integers beyond
64 bits, lone surrogates) are written by the standard library's encoder instead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import polars as pl

from currents_relay.delivery.partner import Partner
from currents_relay.delivery.pii import PiiPolicy


def dumps(value: Any) -> bytes:
    """JSON bytes of a wire event (compact, UTF-8)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogatepass")


def written(
    partner: Partner, frame: pl.DataFrame, pii: PiiPolicy | None = None
) -> tuple[list[bytes], list[str]]:
    """Each row's wire event (JSON) and route, in order."""
    apply_pii = pii.apply if pii is not None and pii.active else None
    wire_event, route = partner.wire_event, partner.route
    events, routes = [], []
    for row in frame.iter_rows(named=True):
        if apply_pii:
            row = apply_pii(row)
        routes.append(route(row))
        events.append(dumps(wire_event(row)))
    return events, routes
