"""The hourly DAG, run for real with `dag.test()` (SQLite metadata DB, real files)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HOUR, ROOT

pytestmark = pytest.mark.airflow


@pytest.fixture()
def hourly(airflow_db, monkeypatch, generated_hour, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    landing, summary = generated_hour
    lake = tmp_path / "lake"
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LANDING_URL", str(landing))
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LAKE_URL", str(lake))
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("currents_hourly")
    return dag, lake, summary


def test_dag_processes_an_hour_into_the_lake(hourly):
    dag, lake, summary = hourly
    run = dag.test(run_conf={"hour": HOUR})
    assert run.state == "success"
    report = json.loads((lake / "reports" / f"hour={HOUR}.json").read_text())
    events = report["events"]
    assert (
        events["read"]
        == summary.events
        == events["written"] + events["quarantined"] + events["duplicates"]
    )
    assert report["by_event_type"] == summary.by_event_type
    assert (lake / "manifests" / f"hour={HOUR}.json").exists()


def test_dry_run_writes_nothing(hourly):
    dag, lake, _ = hourly
    run = dag.test(run_conf={"hour": HOUR, "dry_run": True})
    assert run.state == "success"
    assert not lake.exists() or not any(lake.rglob("*.*"))
