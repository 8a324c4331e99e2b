"""Hours: parsing, formatting and choosing the hour a run processes (no heavy imports).

The DAG file imports this module at parse time, so it stays standard-library only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

HOUR_FORMAT = "%Y-%m-%dT%H"
HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}$"
EPOCH = "1970-01-01T00:00:00+00:00"


def parse_hour(text: str) -> datetime:
    """`2026-11-01T10` (also `2026-11-01T10:00`, `...+00:00`, `2026-11-01-10`) -> aware UTC hour."""
    raw = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{2}", raw):
        raw = raw[:10] + "T" + raw[11:]
    if re.fullmatch(HOUR_PATTERN, raw):
        raw += ":00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"hour {text!r} is not an hour like 2026-11-01T10") from None
    value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        raise ValueError(f"hour {text!r} is not on the hour")
    return value


def hour_key(hour: datetime) -> str:
    """The lake's hour partition value: `2026-11-01T10`."""
    return hour.astimezone(UTC).strftime(HOUR_FORMAT)


def date_partition(hour: datetime) -> str:
    """Currents' landing partition value: `2026-11-01-10`."""
    return hour.astimezone(UTC).strftime("%Y-%m-%d-%H")


def resolve_hour(param_hour: str | None, data_interval_start: datetime | None) -> datetime:
    """The hour a run processes: the `hour` param if given, else the run's interval start."""
    if param_hour:
        return parse_hour(param_hour)
    if data_interval_start is None:
        raise ValueError(
            "this run has no data interval (a manual trigger): the `hour` param is required"
        )
    return parse_hour(data_interval_start.isoformat())


def settle_until(params: dict, data_interval_end: datetime | None) -> str:
    """When the settle wait ends: `settle_minutes` after the interval, or now if `hour` is given."""
    if params.get("hour"):
        return EPOCH
    if data_interval_end is None:
        raise ValueError(
            "this run has no data interval (a manual trigger): the `hour` param is required"
        )
    return (
        data_interval_end + timedelta(minutes=int(params.get("settle_minutes") or 0))
    ).isoformat()
