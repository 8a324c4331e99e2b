"""DAG integrity: the DAGs import cleanly, fast, without heavy libraries, with our conventions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "currents_hourly" in dagbag.dag_ids


def test_conventions(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md, f"{dag.dag_id} has no docs"
        assert not dag.catchup
        for task in dag.tasks:
            if task.task_id not in ("settle", "resolve", "plan"):  # these fail fast, on purpose
                assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"
            # One XCom per result: a dict's keys pushed one by one cost an API call each.
            assert not getattr(task, "multiple_outputs", False), f"{task.task_id}: per-key XComs"


def test_hourly_schedule_owns_whole_hours_and_names_runs_after_them(dagbag):
    from datetime import UTC, datetime

    from airflow.timetables.base import DataInterval
    from airflow.timetables.interval import CronDataIntervalTimetable
    from airflow.utils.types import DagRunType

    dag = dagbag.dags["currents_hourly"]
    timetable = dag.timetable
    assert isinstance(timetable, CronDataIntervalTimetable)
    assert timetable.summary == "0 * * * *"
    start, end = datetime(2026, 11, 1, 10, tzinfo=UTC), datetime(2026, 11, 1, 11, tzinfo=UTC)
    for kind, name in ((DagRunType.SCHEDULED, "scheduled"), (DagRunType.BACKFILL_JOB, "backfill")):
        run_id = timetable.generate_run_id(
            run_type=kind, run_after=end, data_interval=DataInterval(start, end)
        )
        assert run_id == f"{name}__2026-11-01T10"
    assert set(dag.params) >= {"hour", "dry_run", "settle_minutes"}
    assert dag.get_task("report").trigger_rule == "all_done"
    assert [o.name for o in dag.get_task("lake_updated").outlets] == ["currents_lake"]
    assert dag.get_task("ingest").outlets == []
    assert dag.get_task("resolve").upstream_task_ids == set()  # the hour is named first


def test_dag_file_parses_fast_without_heavy_imports():
    code = f"""
import json, runpy, sys, time
import airflow.sdk, airflow.providers.standard.sensors.date_time  # what the parser has loaded anyway
before = set(sys.modules)
start = time.perf_counter()
runpy.run_path({str(ROOT / "dags" / "currents_hourly.py")!r})
elapsed = time.perf_counter() - start
heavy = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("pandas", "pyarrow", "great_expectations", "polars", "fastavro", "numpy", "fsspec"))
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert (
        result["seconds"] < 1.0
    )  # ~ms in practice; generous bound so a loaded CI machine cannot flake
