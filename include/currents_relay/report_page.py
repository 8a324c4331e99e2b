"""The hours' reports as HTML pages: what an operator asks first, readable without a CDN.

`hours_page` lists recent hours with their state; `hour_page` shows one hour: did every stage
reconcile, what was quarantined and why, what each destination got, and the hour beside the
day before it (inline SVG charts). Pure functions of the report dicts the lake holds
(`lake.reports`), so the Airflow plugin only reads and serves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1d2433}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:4px 10px;border-bottom:1px solid #e3e6ea;
text-align:right}th{background:#f5f7f9}td:first-child,th:first-child{text-align:left}
.ok{color:#137333}.warn{color:#b06000}.bad{color:#c5221f}.muted{color:#68707d}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.ok{background:#e6f4ea}.badge.warn{background:#fef7e0}.badge.bad{background:#fce8e6}
svg text{font-size:10px;fill:#68707d}a{color:#1a73e8}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _badge(state: str) -> str:
    kind = {"reconciled": "ok", "delivered": "ok", "skipped": "muted", "failed": "bad"}
    return f"<span class='badge {kind.get(state, 'warn')}'>{escape(state)}</span>"


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
    rows = []
    for report in reports:
        events = report.get("events", {})
        waiting = [
            name
            for name, counts in report.get("destinations", {}).items()
            if destination_state(counts) in ("pending", "failed")
        ]
        hour = escape(report["hour"])
        rows.append(
            f"<tr><td><a href='{base}hours/{hour}'>{hour}</a></td>"
            f"<td>{_badge(hour_state(report))}</td><td>{_n(events.get('read', 0))}</td>"
            f"<td>{_n(events.get('written', 0))}</td><td>{_n(events.get('quarantined', 0))}</td>"
            f"<td>{_n(len(report.get('destinations', {})))}</td>"
            f"<td>{escape(', '.join(waiting)) or '-'}</td></tr>"
        )
    chart = _bars([(r["hour"][11:], r.get("events", {}).get("written", 0)) for r in reports][::-1])
    body = (
        "<h1>Currents hours</h1><p class='muted'>The merged state of each hour: its committed "
        "version and every destination's latest push or replay.</p>"
        f"<h2>Events written per hour</h2>{chart}"
        "<table><tr><th>hour (UTC)</th><th>state</th><th>read</th><th>written</th>"
        "<th>quarantined</th><th>destinations</th><th>pending or failed</th></tr>"
        + ("".join(rows) or "<tr><td colspan='7'>No processed hour yet.</td></tr>")
        + "</table>"
    )
    return _page("Currents hours", body)


def _bars(points: Sequence[tuple[str, float]], height: int = 90, highlight: str = "") -> str:
    """An inline SVG bar chart of (label, value) points."""
    if not points:
        return "<p class='muted'>No data.</p>"
    width, top = max(12, 600 // len(points)), max(value for _, value in points) or 1
    bars = []
    for i, (label, value) in enumerate(points):
        h = round(height * value / top)
        color = "#1a73e8" if label != highlight else "#e37400"
        bars.append(
            f"<rect x='{i * width + 1}' y='{height - h + 12}' width='{width - 2}' height='{h}' "
            f"fill='{color}'><title>{escape(label)}: {_n(value)}</title></rect>"
        )
        if len(points) <= 24 or i % 4 == 0:
            bars.append(f"<text x='{i * width + 1}' y='{height + 24}'>{escape(label)}</text>")
    return (
        f"<svg width='{width * len(points)}' height='{height + 28}' role='img'>"
        f"<text x='0' y='9'>max {_n(top)}</text>{''.join(bars)}</svg>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def hour_page(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    runs: Sequence[Mapping[str, Any]] = (),
    docs_href: str | None = None,
    validation_href: str | None = None,
) -> str:
    """One hour's merged report; `history`: the hours before it (for the comparison)."""
    hour = report["hour"]
    events = report.get("events", {})
    reconciled = ingest_reconciles(report)
    stages = [
        [
            "ingest",
            _badge("reconciled" if reconciled else "does not reconcile"),
            f"read {_n(events.get('read', 0))} = written {_n(events.get('written', 0))} + "
            f"quarantined {_n(events.get('quarantined', 0))} + duplicates "
            f"{_n(events.get('duplicates', 0))}",
        ]
    ]
    destinations = []
    for name, counts in report.get("destinations", {}).items():
        ok = destination_reconciles(counts)
        stages.append(
            [
                f"push {escape(name)}",
                _badge("reconciled" if ok else "does not reconcile"),
                f"considered {_n(counts.get('considered', 0))} = selected "
                f"{_n(counts.get('selected', 0))} + skipped "
                f"{_n(sum((counts.get('skipped') or {}).values()))}; selected = delivered "
                f"{_n(counts.get('delivered', 0))} + dead-lettered "
                f"{_n(counts.get('dead_lettered', 0))} + pending {_n(counts.get('pending', 0))}",
            ]
        )
        skipped = ", ".join(f"{k} {_n(v)}" for k, v in (counts.get("skipped") or {}).items())
        destinations.append(
            [
                escape(name),
                _badge(destination_state(counts)),
                _n(counts.get("delivered", 0)),
                _n(counts.get("accepted_only", 0)),
                skipped or "0",
                _n(counts.get("dead_lettered", 0)),
                _n(counts.get("pending", 0)),
                escape(str(counts.get("updated_at") or "")),
                f"<span class='bad'>{escape(str(counts['error'])[:300])}</span>"
                if counts.get("error")
                else "-",
            ]
        )
    reasons = [[escape(k), _n(v)] for k, v in report.get("quarantine_reasons", {}).items()]
    by_type = [[escape(k), _n(v)] for k, v in report.get("by_event_type", {}).items()]
    files = report.get("files", {})
    compare = sorted([*history, report], key=lambda r: r["hour"])
    written = [
        (r["hour"][5:].replace("T", " "), r.get("events", {}).get("written", 0)) for r in compare
    ]
    share = [
        (
            r["hour"][5:].replace("T", " "),
            round(
                100 * r.get("events", {}).get("quarantined", 0) / (r["events"].get("read") or 1), 2
            ),
        )
        for r in compare
        if r.get("events")
    ]
    here = hour[5:].replace("T", " ")
    validation = (
        f"<a href='{escape(validation_href)}'>validation results</a>; " if validation_href else ""
    )
    docs = validation + (
        f"<a href='{escape(docs_href)}'>Great Expectations Data Docs</a>"
        if docs_href
        else (
            f"<span class='muted'>No Data Docs built: <code>currents-relay docs --lake ... --hour "
            f"{escape(hour)}</code></span>"
        )
    )
    run_rows = []
    for run in runs:
        this_run = run.get("this_run") or {}
        states = this_run.get("push_task_states") or {}
        run_rows.append(
            [
                escape(str(this_run.get("run_id"))),
                escape(str(run.get("written_at", ""))),
                escape(", ".join(f"{k}: {v}" for k, v in states.items()) or "-"),
            ]
        )
    empty = (
        "<p class='warn'>No files were found for this hour.</p>" if not files.get("read") else ""
    )
    body = (
        f"<p><a href='../'>All hours</a></p><h1>Hour {escape(hour)} UTC "
        f"{_badge(hour_state(report))}</h1><p class='muted'>version "
        f"{escape(str(report.get('version')))}; {_n(files.get('read', 0))} files "
        f"({_n(files.get('quarantined', 0))} quarantined); {docs}</p>{empty}"
        f"<h2>Did every stage reconcile?</h2>{_table(['stage', 'state', 'counts'], stages)}"
        "<h2>What each destination got</h2>"
        + _table(
            [
                "destination",
                "state",
                "delivered",
                "only accepted",
                "skipped",
                "dead-lettered",
                "pending",
                "updated",
                "last error",
            ],
            destinations,
        )
        + "<h2>What was quarantined, and why</h2>"
        + (_table(["reason", "rows"], reasons) if reasons else "<p class='ok'>Nothing.</p>")
        + f"<h2>Against the hours before it</h2><p>Events written</p>{_bars(written, highlight=here)}"
        + f"<p>Quarantined, % of read</p>{_bars(share, highlight=here)}"
        + "<h2>Events written by type</h2>"
        + _table(["event type", "written"], by_type)
        + (
            "<h2>Runs of this hour</h2>" + _table(["run", "at", "push tasks"], run_rows)
            if runs
            else ""
        )
    )
    return _page(f"Currents hour {hour}", body)
