"""The hourly DAG, run for real with `dag.test()` against the partner sandbox."""

from __future__ import annotations

import json

import pytest

from currents_relay.destinations import enabled_destinations
from currents_relay.tools.sandbox import Sandbox
from tests.conftest import HOUR, ROOT
from tests.delivery.conftest import EXTRA, LOGIN

pytestmark = pytest.mark.airflow
NAMES = [d.name for d in enabled_destinations()]


def connection_json(url: str, secret: str, extra: dict, login: str | None = None) -> str:
    return json.dumps(
        {"conn_type": "http", "host": url, "login": login, "password": secret, "extra": extra}
    )


@pytest.fixture()
def hourly(airflow_db, monkeypatch, generated_hour, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    landing, summary = generated_hour
    lake = tmp_path / "lake"
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LANDING_URL", str(landing))
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LAKE_URL", str(lake))
    with Sandbox(names=NAMES) as sandbox:
        for name, url in sandbox.urls().items():
            monkeypatch.setenv(
                f"AIRFLOW_CONN_CURRENTS_{name.upper()}",
                connection_json(
                    url, sandbox.sims[name].secret, EXTRA.get(name, {}), LOGIN.get(name)
                ),
            )
        dag = DagBag(dag_folder=str(ROOT / "dags")).dags["currents_hourly"]
        yield dag, lake, summary, sandbox


def read_report(lake) -> dict:
    return json.loads((lake / "reports" / f"hour={HOUR}.json").read_text())


def test_dag_ingests_and_pushes_to_every_destination(hourly):
    dag, lake, summary, sandbox = hourly
    run = dag.test(run_conf={"hour": HOUR})
    assert run.state == "success"
    report = read_report(lake)
    events = report["events"]
    assert (
        events["read"]
        == summary.events
        == events["written"] + events["quarantined"] + events["duplicates"]
    )
    assert report["by_event_type"] == summary.by_event_type
    assert set(report["destinations"]) == set(NAMES)
    for name, counts in report["destinations"].items():
        assert (
            counts["considered"]
            == events["written"]
            == counts["selected"] + sum(counts["skipped"].values())
        )
        assert (
            counts["delivered"] == counts["selected"] == sandbox.sims[name].stats()["unique_events"]
        )
        assert counts["pending"] == counts["dead_lettered"] == 0
        assert sandbox.sims[name].stats()["duplicates"] == 0


def test_a_broken_destination_fails_alone_and_a_rerun_delivers_what_was_pending(hourly):
    dag, lake, _, sandbox = hourly
    sandbox.sims["rudderstack"].credentials_valid = False
    run = dag.test(run_conf={"hour": HOUR})
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["push_rudderstack"] == "failed" and states["report"] == "failed"
    assert all(states[f"push_{n}"] == "success" for n in NAMES if n != "rudderstack")
    report = read_report(lake)
    broken = report["destinations"]["rudderstack"]
    assert broken["pending"] == broken["selected"] > 0 and "HTTP 401" in broken["error"]
    assert sandbox.sims["rudderstack"].stats()["requests"] == 1  # no pointless retries on a 401

    sandbox.sims["rudderstack"].credentials_valid = True
    again = dag.test(run_conf={"hour": HOUR})
    assert again.state == "success"
    fixed = read_report(lake)["destinations"]
    assert fixed["rudderstack"]["delivered"] == fixed["rudderstack"]["selected"]
    for name in NAMES:
        assert (
            sandbox.sims[name].stats()["duplicates"] == 0
        )  # the re-run resent nothing acknowledged


def test_dry_run_writes_and_sends_nothing_and_emits_no_asset_event(hourly):
    dag, lake, _, sandbox = hourly
    run = dag.test(run_conf={"hour": HOUR, "dry_run": True})
    assert run.state == "success"
    assert not lake.exists() or not any(lake.rglob("*.*"))
    assert all(sim.stats()["requests"] == 0 for sim in sandbox.sims.values())
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["lake_updated"] == "skipped"  # no `currents_lake` asset event


def test_an_hour_without_files_warns_or_fails_with_require_files(hourly, caplog):
    dag, lake, _, _ = hourly
    empty = "2026-11-02T03"
    run = dag.test(run_conf={"hour": empty})
    assert run.state == "success"
    report = json.loads((lake / "reports" / f"hour={empty}.json").read_text())
    assert report["files"]["read"] == 0 and report["events"]["read"] == 0
    (own,) = (lake / "runs" / f"hour={empty}").glob("*.json")
    assert json.loads(own.read_text())["warnings"] == [
        f"hour {empty}: no files in the landing zone"
    ]
    strict = dag.test(run_conf={"hour": empty, "require_files": True})
    assert strict.state == "failed"
    states = {ti.task_id: ti.state for ti in strict.get_task_instances()}
    assert states["collect"] == "failed" and states["ingest"] == "upstream_failed"


def test_destinations_param_pushes_to_a_subset(hourly):
    dag, lake, _, sandbox = hourly
    run = dag.test(run_conf={"hour": HOUR, "destinations": ["zeotap"]})
    assert run.state == "success"
    assert set(read_report(lake)["destinations"]) == {"zeotap"}
    assert sandbox.sims["custom_http"].stats()["requests"] == 0
