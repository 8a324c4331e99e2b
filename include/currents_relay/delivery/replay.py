"""Replay: deliver an hour range again to one destination (what `currents_replay` and
`currents-relay replay` run). Only hours with a committed version are walked
(`versions.committed_hours`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from currents_relay.delivery.engine import DeliveryError, DeliveryStopped
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import last_counts, push_hour
from currents_relay.hours import hour_key
from currents_relay.lake import Lake
from currents_relay.lake.versions import committed_hours


def replay_hours(
    lake_url: str,
    name: str,
    endpoint: Endpoint,
    first: datetime,
    last: datetime,
    *,
    dead_letters: bool = True,
    resend_acknowledged: bool = False,
    mask: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Each committed hour's counts, in order; an hour whose push failed yields its recorded
    counts with `error`. Stops at the first `DeliveryStopped` (credentials, endpoint): it
    would stop every later hour too."""
    for hour in committed_hours(Lake(lake_url), hour_key(first), hour_key(last)):
        try:
            yield push_hour(
                lake_url,
                hour,
                name,
                endpoint,
                replay=dead_letters,
                resend_acknowledged=resend_acknowledged,
                mask=mask,
            )
        except DeliveryError as error:
            yield last_counts(lake_url, hour, name) | {"error": str(error)}
            if isinstance(error, DeliveryStopped):
                raise


def needing_replay(
    lake_url: str, first: datetime, last: datetime, *, dead_letters: bool = True
) -> list[str]:
    """The destinations whose latest push of an hour in the range left events pending (or
    dead-lettered, with `dead_letters`), or failed, by the hours' merged reports."""
    from currents_relay.lake.reports import read_report

    lake = Lake(lake_url)
    found: set[str] = set()
    for hour in committed_hours(lake, hour_key(first), hour_key(last)):
        for name, counts in ((read_report(lake, hour) or {}).get("destinations") or {}).items():
            dead = dead_letters and counts.get("dead_lettered")
            if counts.get("pending") or dead or counts.get("error"):
                found.add(name)
    return sorted(found)
