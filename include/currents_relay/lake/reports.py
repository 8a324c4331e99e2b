"""The hour's report: the committed version's own, and each destination's latest part, merged.

`process` puts its report in the hour's manifest (it is part of the commit). Each push or
replay of a destination writes `reports/hour=<h>/<destination>.json` under its lease: the
counts of its latest run, the version it delivered, and when. `reports/hour=<h>.json` is the
merge of all of them; every writer re-merges it with a conditional write (read its tag, then
the parts, then write over that tag, again if refused), so the last merge of concurrent
writers includes every part: runs and replays never lose each other's updates.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from currents_relay.lake.storage import Lake, json_bytes
from currents_relay.lake.versions import read_committed

ACCEPTED_NOTE = (
    "only accepted: the partner checks what it accepted later (Treasure Data answers 200 "
    "before checking the write key); an acknowledgement is not proof of import"
)


def report_path(hour: str) -> str:
    return f"reports/hour={hour}.json"


def part_path(hour: str, destination: str) -> str:
    return f"reports/hour={hour}/{destination}.json"


def write_part(lake: Lake, hour: str, destination: str, counts: dict[str, Any]) -> None:
    """Record what the latest push of `destination` did for `hour` (call it under the lease)."""
    part = counts | {"updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    lake.write_bytes(part_path(hour, destination), json_bytes(part))


def read_parts(lake: Lake, hour: str) -> dict[str, dict[str, Any]]:
    parts = {}
    for relative in lake.glob(f"reports/hour={hour}/*.json"):
        name = relative.rsplit("/", 1)[-1].removesuffix(".json")
        part = lake.read_json(relative)
        if part is not None:
            parts[name] = part
    return parts


def merged_report(lake: Lake, hour: str) -> dict[str, Any] | None:
    """The committed version's report with every destination's latest part (None: the hour
    was never processed). A part pushed from an older version says so (`behind_version`)."""
    committed = read_committed(lake, hour)
    if committed is None:
        return None
    report = dict(committed.manifest.get("report") or {"hour": hour})
    report["version"] = committed.version
    destinations = {}
    for name, part in sorted(read_parts(lake, hour).items()):
        if part.get("version") not in (None, committed.version):
            part = part | {"behind_version": True}
        destinations[name] = part
    report["destinations"] = destinations
    return report


def write_report(lake: Lake, hour: str, attempts: int = 20) -> dict[str, Any] | None:
    """Merge and write `reports/hour=<h>.json`; returns what was written."""
    path = lake.path(report_path(hour))
    for attempt in range(attempts):
        current = lake.objects.get(path)
        report = merged_report(lake, hour)
        if report is None:
            return None
        data = json_bytes(report)
        if current is not None and current.data == data:
            return report
        if current is None:
            written = lake.objects.create(path, data)
        else:
            written = lake.objects.replace(path, data, current.tag)
        if written is not None:
            return report
        time.sleep(0.05 * (attempt + 1))  # another writer merged meanwhile: merge again
    raise RuntimeError(f"hour {hour}: could not write the merged report ({attempts} attempts)")


def read_report(lake: Lake, hour: str) -> dict[str, Any] | None:
    return lake.read_json(report_path(hour))


def recent_reports(lake: Lake, limit: int = 48, before: str | None = None) -> list[dict[str, Any]]:
    """The merged reports of the latest `limit` hours (before `before`, if given), newest
    first."""
    hours = sorted(
        (p.rsplit("hour=", 1)[-1].removesuffix(".json") for p in lake.glob("reports/hour=*.json")),
        reverse=True,
    )
    hours = [h for h in hours if before is None or h < before][:limit]
    return [r for r in (read_report(lake, h) for h in hours) if r is not None]


def run_path(hour: str, run_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"runs/hour={hour}/{safe}.json"


def write_run_report(lake: Lake, hour: str, run_id: str, report: dict[str, Any]) -> None:
    """Keep one Airflow run's own report of an hour beside the hour's merged state."""
    written = report | {"written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    lake.write_bytes(run_path(hour, run_id), json_bytes(written))


def run_reports(lake: Lake, hour: str) -> list[dict[str, Any]]:
    """Every run's own report of `hour`, oldest first."""
    found = [lake.read_json(p) for p in lake.glob(f"runs/hour={hour}/*.json")]
    return sorted((r for r in found if r), key=lambda r: r.get("written_at", ""))
