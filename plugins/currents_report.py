"""The Currents report in the Airflow UI: a page per hour, behind Airflow's own login.

A FastAPI app (mounted at `/currents`) that every request must reach through Airflow's
authentication (`get_user`: the UI's session cookie or a Bearer token), with two UI entries: a
"Currents report" item in the navigation and a tab on every DAG run (it opens the hour that
run processed). It reads the lake named by the Variable `currents_lake_url` (default: the
project's `data/lake`), as the DAGs do, and renders `currents_relay.report_page`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

PROJECT = Path(__file__).resolve().parents[1]

app = FastAPI(title="Currents report", dependencies=[Depends(get_user)])


def _lake():
    from airflow.models.variable import Variable

    from currents_relay.lake import Lake

    url = Variable.get("currents_lake_url", default_var=None) or str(PROJECT / "data" / "lake")
    return Lake(url)


def _report(hour: str) -> dict:
    from currents_relay.lake.reports import read_report

    report = read_report(_lake(), hour)
    if report is None:
        raise HTTPException(404, f"hour {hour} has no report (it was never processed)")
    return report


@app.get("/", response_class=HTMLResponse)
def hours() -> str:
    from currents_relay.lake.reports import recent_reports
    from currents_relay.report_page import hours_page

    return hours_page(recent_reports(_lake(), limit=72))


@app.get("/hours/{hour}", response_class=HTMLResponse)
def hour(hour: str) -> str:
    from currents_relay.lake.reports import recent_reports, run_reports
    from currents_relay.report_page import hour_page

    report = _report(hour)
    lake = _lake()
    docs = _docs_index(hour)
    return hour_page(
        report,
        history=recent_reports(lake, limit=48, before=hour),
        runs=run_reports(lake, hour),
        docs_href=f"../docs/{hour}/index.html" if docs else None,
        validation_href=f"../validation/{hour}",
    )


@app.get("/api/hours/{hour}")
def hour_json(hour: str) -> dict:
    return _report(hour)


@app.get("/validation/{hour}")
def validation(hour: str) -> dict:
    """The suites' results of the hour's committed version (counts and row positions)."""
    from currents_relay.lake.versions import read_committed

    lake = _lake()
    committed = read_committed(lake, hour)
    path = (committed.manifest.get("outputs") or {}).get("validation") if committed else None
    results = lake.read_json(path) if path else None
    if results is None:
        raise HTTPException(404, f"hour {hour} has no validation results")
    return results


@app.get("/runs/{dag_id}/{run_id}")
def run(dag_id: str, run_id: str) -> RedirectResponse:
    """The hour a DAG run processed (its `hour` param, else its data interval)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from currents_relay.hours import hour_key, resolve_hour

    with create_session() as session:
        found = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        )
        if found is None:
            raise HTTPException(404, f"no run {run_id} of {dag_id}")
        conf, start = dict(found.conf or {}), found.data_interval_start
    try:
        hour = hour_key(resolve_hour(conf.get("hour"), start))
    except ValueError as error:
        raise HTTPException(404, f"run {run_id} names no hour: {error}") from None
    return RedirectResponse(f"../../hours/{hour}", status_code=307)


def _docs_index(hour: str) -> Path | None:
    lake = _lake()
    if not lake.local:
        return None
    site = Path(lake.path(f"data_docs/hour={hour}")) / "gx" / "uncommitted" / "data_docs"
    index = site / "local_site" / "index.html"
    return index if index.is_file() else None


@app.get("/docs/{hour}/{path:path}")
def docs(hour: str, path: str) -> FileResponse:
    """The hour's Great Expectations Data Docs (`currents-relay docs`), on a local lake."""
    index = _docs_index(hour)
    if index is None:
        raise HTTPException(404, f"no Data Docs for hour {hour}: run `currents-relay docs`")
    site = index.parent.resolve()
    target = (site / path).resolve()
    if not target.is_relative_to(site) or not target.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(target)


class CurrentsReportPlugin(AirflowPlugin):
    name = "currents_report"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": app, "url_prefix": "/currents", "name": "Currents report"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Currents report",
            "href": "currents/",
            "destination": "nav",
            "category": "browse",
            "url_route": "currents",
        },
        {
            "name": "Currents report",
            "href": "currents/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "currents_run",
        },
    ]
