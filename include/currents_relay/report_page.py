"""The hours' reports as HTML pages: what an operator asks first, readable without a CDN.

`hours_page` lists recent hours with their state; `hour_page` shows one hour: did every stage
reconcile, what was quarantined and why, what each destination got, and the hour beside the
day before it (inline SVG charts). Pure functions of the report dicts the lake holds
(`lake.reports`), rendered with the Jinja templates in `templates/` (autoescaped), so the
Airflow plugin only reads and serves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("currents_relay", "templates"), autoescape=True
    )
    env.filters["n"] = lambda value: f"{value:,}" if isinstance(value, int) else value
    return env


def ingest_reconciles(report: Mapping[str, Any]) -> bool:
    events = report.get("events", {})
    parts = ("written", "quarantined", "duplicates")
    return events.get("read", 0) == sum(events.get(k, 0) for k in parts)


def destination_state(counts: Mapping[str, Any]) -> str:
    """`delivered`, `pending`, `failed` (the latest push stopped), or `dry run`."""
    if counts.get("dry_run"):
        return "dry run"
    if counts.get("error"):
        return "failed"
    return "pending" if counts.get("pending") else "delivered"


def destination_reconciles(counts: Mapping[str, Any]) -> bool:
    skipped = sum((counts.get("skipped") or {}).values())
    settled = counts.get("delivered", 0) + counts.get("dead_lettered", 0) + counts.get("pending", 0)
    return (
        counts.get("considered", 0) == counts.get("selected", 0) + skipped
        and counts.get("selected", 0) == settled
    )


def hour_state(report: Mapping[str, Any]) -> str:
    """`failed`, `pending`, `quarantined` (some rows), `empty` (no files), or `reconciled`."""
    destinations = report.get("destinations", {}).values()
    if not ingest_reconciles(report) or any(not destination_reconciles(c) for c in destinations):
        return "does not reconcile"
    states = {destination_state(c) for c in destinations}
    if "failed" in states:
        return "failed"
    if "pending" in states:
        return "pending"
    if not report.get("files", {}).get("read"):
        return "empty"
    return "quarantined rows" if report.get("events", {}).get("quarantined") else "reconciled"


def hours_page(reports: Sequence[Mapping[str, Any]], base: str = "") -> str:
    """Recent hours, newest first: state, events, quarantined, destinations with pending."""
    rows = [
        {
            "report": report,
            "state": hour_state(report),
            "waiting": [
                name
                for name, counts in report.get("destinations", {}).items()
                if destination_state(counts) in ("pending", "failed")
            ],
        }
        for report in reports
    ]
    chart = [(r["hour"][11:], r.get("events", {}).get("written", 0)) for r in reports][::-1]
    return (
        _templates()
        .get_template("hours.html")
        .render(title="Currents hours", rows=rows, chart=chart, base=base)
    )


def _label(hour: str) -> str:
    return hour[5:].replace("T", " ")


def hour_page(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    runs: Sequence[Mapping[str, Any]] = (),
    docs_href: str | None = None,
    validation_href: str | None = None,
) -> str:
    """One hour's merged report; `history`: the hours before it (for the comparison)."""
    compare = sorted([*history, report], key=lambda r: r["hour"])
    events = [(_label(r["hour"]), r.get("events") or {}) for r in compare]
    destinations = [
        {
            "name": name,
            "counts": counts,
            "state": destination_state(counts),
            "reconciles": destination_reconciles(counts),
            "skipped": sum((counts.get("skipped") or {}).values()),
        }
        for name, counts in report.get("destinations", {}).items()
    ]
    return (
        _templates()
        .get_template("hour.html")
        .render(
            title=f"Currents hour {report['hour']}",
            report=report,
            state=hour_state(report),
            ingest_ok=ingest_reconciles(report),
            destinations=destinations,
            written=[(at, e.get("written", 0)) for at, e in events],
            share=[
                (at, round(100 * e.get("quarantined", 0) / (e.get("read") or 1), 2))
                for at, e in events
                if e
            ],
            here=_label(report["hour"]),
            runs=runs,
            docs_href=docs_href,
            validation_href=validation_href,
        )
    )
