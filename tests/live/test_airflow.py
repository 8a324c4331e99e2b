"""The three ways of use on the real Airflow services: a trigger with params (what the UI's
form sends), a backfill and its re-run, the schedule; and the report page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from currents_relay.lake import Lake
from currents_relay.lake.versions import live_files
from currents_relay.tools.sandbox import DEFAULT_PORTS
from tests.live.conftest import HOURS

pytestmark = [pytest.mark.live, pytest.mark.airflow]
DAG = "currents_hourly"


def report(live, hour: str) -> dict:
    return json.loads((live.lake / "reports" / f"hour={hour}.json").read_text())


def delivered_everything(live, hours: list[str]) -> None:
    stats = {name: live.sandbox_stats()[port] for name, port in DEFAULT_PORTS.items()}
    delivered = {name: 0 for name in DEFAULT_PORTS}
    for hour in hours:
        got = report(live, hour)
        events = got["events"]
        assert events["read"] == events["written"] + events["quarantined"] + events["duplicates"]
        assert events["written"] > 0
        for name, counts in got["destinations"].items():
            assert counts["pending"] == counts["dead_lettered"] == 0, (hour, name)
            assert counts["delivered"] == counts["selected"] > 0
            delivered[name] += counts["delivered"]
    for name, seen in stats.items():
        assert seen["duplicates"] == 0, name
        assert seen["unique_events"] >= delivered[name], name


def live_rows(live, hours: list[str]) -> pa.Table:
    lake = Lake(str(live.lake))
    tables = []
    for hour in hours:
        for path in live_files(lake, hour):
            table = pq.read_table(path).select(["event_type", "id", "time", "source_uri"])
            tables.append(table)
    return pa.concat_tables(tables).sort_by([("event_type", "ascending"), ("id", "ascending")])


def test_a_trigger_with_params_processes_and_delivers_the_hour(live):
    hour = HOURS[0]
    answer = live.api(
        "POST",
        f"/api/v2/dags/{DAG}/dagRuns",
        json={"logical_date": None, "conf": {"hour": hour, "settle_minutes": 0}},
    )
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]
    live.api("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False}).raise_for_status()
    run = live.wait_for([run_id])[run_id]
    assert run["state"] == "success", live.task_states(run_id)
    assert set(live.task_states(run_id).values()) == {"success"}
    delivered_everything(live, [hour])
    (own,) = (live.lake / "runs" / f"hour={hour}").glob("*.json")
    assert json.loads(own.read_text())["this_run"]["run_id"] == run_id


def test_a_manual_run_without_hour_fails_at_once_in_its_first_task(live):
    answer = live.api("POST", f"/api/v2/dags/{DAG}/dagRuns", json={"logical_date": None})
    run_id = answer.json()["dag_run_id"]
    live.api("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False}).raise_for_status()
    run = live.wait_for([run_id], timeout=120)[run_id]
    assert run["state"] == "failed"
    states = live.task_states(run_id)
    assert states["resolve"] == "failed" and states["collect"] == "upstream_failed"
    path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/resolve/logs/1"
    log = live.api("GET", path, headers={"Accept": "application/json"}).text
    assert "the `hour` param is required" in log


def test_a_backfill_of_three_hours_then_its_rerun_sends_nothing_twice(live):
    live.api("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False}).raise_for_status()
    first, last = HOURS[0], HOURS[2]
    known = {r["dag_run_id"] for r in live.runs()}
    args = ["backfill", "create", "--dag-id", DAG, "--from-date", f"{first}:00:00"]
    live.airflow(*args, "--to-date", f"{last}:00:00", "--reprocess-behavior", "completed")
    backfill = [
        r["dag_run_id"]
        for r in live.runs()
        if r["dag_run_id"] not in known and r["run_type"] == "backfill"
    ]
    runs = live.wait_for(backfill)
    assert len(runs) == 3 and all(r["state"] == "success" for r in runs.values())
    starts = sorted(r["data_interval_start"][:13] for r in runs.values())
    assert starts == HOURS[:3]
    delivered_everything(live, HOURS[:3])
    rows = live_rows(live, HOURS[:3])
    sent = {port: s["unique_events"] for port, s in live.sandbox_stats().items()}

    live.backfills_done()
    started = datetime.now(UTC).isoformat()
    live.airflow(*args, "--to-date", f"{last}:00:00", "--reprocess-behavior", "completed")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # new runs, or the same runs queued again
        again = [
            r
            for r in live.runs()
            if r["run_type"] == "backfill"
            and r["data_interval_start"][:13] in HOURS[:3]
            and (r["queued_at"] or "") > started
        ]
        if len(again) == 3 and all(r["state"] in ("success", "failed") for r in again):
            break
        time.sleep(2)
    assert len(again) == 3 and all(r["state"] == "success" for r in again), again
    assert live_rows(live, HOURS[:3]).equals(rows)  # the same live rows, new versions
    stats = live.sandbox_stats()
    assert {port: s["unique_events"] for port, s in stats.items()} == sent
    assert all(s["duplicates"] == 0 for s in stats.values())


def test_the_scheduled_run_owns_the_last_complete_hour(live):
    live.api("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False}).raise_for_status()
    deadline = time.monotonic() + 120
    scheduled = []
    while not scheduled and time.monotonic() < deadline:
        scheduled = [r for r in live.runs() if r["run_type"] == "scheduled"]
        time.sleep(2)
    assert scheduled, "the scheduler created no run"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    latest = max(scheduled, key=lambda r: r["data_interval_end"])
    assert latest["data_interval_end"] in (end.isoformat().replace("+00:00", "Z"),)
    start = (end - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert latest["data_interval_start"] == start
    assert latest["dag_run_id"] == f"scheduled__{start[:13]}"  # the run id names its hour


@pytest.fixture()
def browser(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.implicitly_wait(10)
    yield chrome
    chrome.quit()


def test_in_a_browser_login_trigger_from_the_form_and_read_the_report_page(live, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    hour = HOURS[3]
    wait = WebDriverWait(browser, 30)
    browser.get(live.url)
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(live.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: "/auth/login" not in b.current_url)
    browser.get(f"{live.url}/dags/{DAG}")
    known = {r["dag_run_id"] for r in live.runs()}
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")))
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']").click()
    field = wait.until(ready.visibility_of_element_located((By.ID, "element_hour")))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the form may still be filling in its defaults
        if field.get_attribute("value") != hour:
            field.clear()
            field.send_keys(hour)
        time.sleep(1)
        if field.get_attribute("value") == hour:
            break
    browser.save_screenshot(str(shots / "1-trigger-form.png"))
    # The form's own Trigger button (the page header's comes first in the document).
    browser.find_elements(By.XPATH, "//button[normalize-space(.)='Trigger']")[-1].click()
    deadline = time.monotonic() + 60
    new = []
    while not new and time.monotonic() < deadline:
        new = [
            r["dag_run_id"]
            for r in live.runs()
            if r["dag_run_id"] not in known and r["run_type"] == "manual"
        ]
        time.sleep(1)
    assert new, "the form created no run"
    (run_id,) = new
    run = live.wait_for([run_id])[run_id]
    assert run["state"] == "success" and run["conf"].get("hour") == hour, run["conf"]

    quoted = urllib.parse.quote(run_id, safe="")
    browser.get(f"{live.url}/dags/{DAG}/runs/{quoted}/plugin/currents_run")  # the run's tab
    frame = wait.until(ready.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    heading = wait.until(ready.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text.startswith(f"Hour {hour} UTC")
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "2-run-tab.png"))

    browser.get(f"{live.url}/currents/hours/{hour}")
    page = browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(shots / "3-report-page.png"))
    expected = report(live, hour)
    events = expected["events"]
    assert (
        f"read {events['read']:,} = written {events['written']:,} + quarantined "
        f"{events['quarantined']:,} + duplicates {events['duplicates']:,}"
    ) in page
    rows = browser.find_elements(
        By.XPATH, "//h2[.='What each destination got']/following::table[1]//tr"
    )
    shown = {}
    for row in rows[1:]:
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        shown[cells[0]] = (cells[2], cells[5], cells[6])
    assert shown == {
        name: (f"{c['delivered']:,}", f"{c['dead_lettered']:,}", f"{c['pending']:,}")
        for name, c in expected["destinations"].items()
    }
    browser.get(f"{live.url}/currents/")
    assert hour in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(shots / "4-hours.png"))
    saved = os.environ.get("CURRENTS_SCREENSHOTS")
    if saved:
        shutil.copytree(shots, saved, dirs_exist_ok=True)
    assert len(list(shots.glob("*.png"))) == 4


def test_make_airflow_serves_only_this_projects_dags(live):
    dags = {d["dag_id"] for d in live.api("GET", "/api/v2/dags").json()["dags"]}
    assert dags == {"currents_hourly", "currents_replay"}  # no example DAGs
    plugins = {p["name"] for p in live.api("GET", "/api/v2/plugins").json()["plugins"]}
    assert {"currents_report", "currents_timetable"} <= plugins


def test_the_report_page_is_behind_airflows_login(live):
    import requests

    assert requests.get(f"{live.url}/currents/", timeout=10).status_code == 401
    assert requests.get(f"{live.url}/currents/api/hours/{HOURS[0]}", timeout=10).status_code == 401
    assert live.api("GET", f"/currents/api/hours/{HOURS[0]}").json()["hour"] == HOURS[0]
