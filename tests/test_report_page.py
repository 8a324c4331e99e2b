"""The report page plugin: the hours' merged reports as pages, only for a logged-in user."""

from __future__ import annotations

import importlib.util
import json

import pytest
from fastapi.testclient import TestClient

from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.lake import Lake
from currents_relay.lake.reports import write_report, write_run_report
from currents_relay.report_page import hour_state
from tests.conftest import HOUR, ROOT


@pytest.fixture()
def page(generated_hour, tmp_path, monkeypatch):
    from airflow.api_fastapi.core_api.security import get_user

    landing, _ = generated_hour
    lake = tmp_path / "lake"
    process_hour(str(landing), str(lake), parse_hour(HOUR))
    write_report(Lake(str(lake)), HOUR)
    report = json.loads((lake / "reports" / f"hour={HOUR}.json").read_text())
    write_run_report(Lake(str(lake)), HOUR, "manual__x", report | {"this_run": {"run_id": "r1"}})
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LAKE_URL", str(lake))
    spec = importlib.util.spec_from_file_location(
        "currents_report", ROOT / "plugins" / "currents_report.py"
    )
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    client = TestClient(plugin.app)
    yield client, plugin, lake, report
    plugin.app.dependency_overrides.clear()
    assert get_user  # the dependency the app requires


def test_every_page_needs_airflows_login(page):
    client, *_ = page
    for path in ("/", f"/hours/{HOUR}", f"/api/hours/{HOUR}", f"/docs/{HOUR}/index.html"):
        assert client.get(path).status_code == 401, path


def test_the_hour_page_shows_the_merged_report(page):
    from airflow.api_fastapi.core_api.security import get_user

    client, plugin, _, report = page
    plugin.app.dependency_overrides[get_user] = lambda: object()
    html = client.get(f"/hours/{HOUR}").text
    events = report["events"]
    assert f"read {events['read']:,} = written {events['written']:,}" in html
    for name, counts in report["destinations"].items():
        assert name in html and f"{counts['delivered']:,}" in html
    for reason in report["quarantine_reasons"]:
        assert reason in html
    assert "<svg" in html and "r1" in html  # the comparison charts, this hour's runs
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing from a CDN
    assert client.get("/").status_code == 200 and HOUR in client.get("/").text
    assert client.get(f"/api/hours/{HOUR}").json() == report
    assert client.get("/hours/2030-01-01T00").status_code == 404
    results = client.get(f"/validation/{HOUR}").json()  # linked from the page
    assert "validation results" in html and results["engine"] == "arrow"
    assert client.get(f"/docs/{HOUR}/index.html").status_code == 404  # none built yet


def test_the_hours_data_docs_are_served_once_built(page):
    from airflow.api_fastapi.core_api.security import get_user

    client, plugin, lake, _ = page
    plugin.app.dependency_overrides[get_user] = lambda: object()
    site = lake / "data_docs" / f"hour={HOUR}" / "gx" / "uncommitted" / "data_docs" / "local_site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<html>docs</html>")
    assert "Great Expectations Data Docs" in client.get(f"/hours/{HOUR}").text
    assert client.get(f"/docs/{HOUR}/index.html").text == "<html>docs</html>"
    assert client.get(f"/docs/{HOUR}/../../../../reports/hour={HOUR}.json").status_code == 404


def test_an_hours_state_names_what_went_wrong_first():
    base = {
        "hour": HOUR,
        "files": {"read": 3},
        "events": {"read": 10, "written": 9, "quarantined": 1, "duplicates": 0},
    }
    ok = {"considered": 9, "selected": 9, "skipped": {}, "delivered": 9, "dead_lettered": 0}
    assert hour_state(base | {"destinations": {"a": ok | {"pending": 0}}}) == "quarantined rows"
    late = ok | {"delivered": 4, "pending": 5}
    assert hour_state(base | {"destinations": {"a": late}}) == "pending"
    assert hour_state(base | {"destinations": {"a": late | {"error": "HTTP 401"}}}) == "failed"
    assert hour_state(base | {"files": {"read": 0}, "events": {}, "destinations": {}}) == "empty"
    broken = base | {"events": {"read": 11, "written": 9, "quarantined": 1, "duplicates": 0}}
    assert hour_state(broken | {"destinations": {}}) == "does not reconcile"
