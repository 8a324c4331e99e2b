"""The CLI: the report on stdout, clear one-line errors and non-zero exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import HOUR, ROOT


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "currents_relay.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_process_prints_the_report_and_writes_it(generated_hour, tmp_path):
    landing, summary = generated_hour
    done = cli(
        "process", "--landing", str(landing), "--lake", str(tmp_path / "lake"), "--hour", HOUR
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events"]["read"] == summary.events
    assert json.loads((tmp_path / "lake" / "reports" / f"hour={HOUR}.json").read_text()) == report


def test_bad_hour_exits_non_zero_naming_the_argument(tmp_path):
    done = cli(
        "process", "--landing", str(tmp_path), "--lake", str(tmp_path), "--hour", "yesterday"
    )
    assert done.returncode == 2
    assert "--hour" in done.stderr and "yesterday" in done.stderr


def test_unreachable_landing_exits_non_zero_with_one_line(tmp_path):
    done = cli(
        "process",
        "--landing",
        str(tmp_path / "missing"),
        "--lake",
        str(tmp_path / "lake"),
        "--hour",
        HOUR,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "missing" in done.stderr
    assert not (tmp_path / "lake").exists()


def load_settings(cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`currents-relay load-settings airflow_settings.yaml`, run as a user would."""
    command = [sys.executable, "-m", "currents_relay.cli", "load-settings"]
    return subprocess.run(
        [*command, str(ROOT / "airflow_settings.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture()
def settings_removed_after(airflow_db):
    """The session's Airflow as it was: the loaded connections would otherwise point other
    tests' pushes at the sandbox's fixed ports."""
    yield
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id.like("currents_%")).delete()
        session.query(Pool).filter(Pool.pool.like("currents_%")).delete()
        session.query(Variable).filter(Variable.key.like("currents_%")).delete()


@pytest.mark.airflow
def test_airflow_settings_load_pools_connections_and_variables(settings_removed_after, tmp_path):
    done = load_settings(tmp_path, dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"connections": 6, "pools": 6, "variables": 2}
    listing = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "airflow") if (ROOT / ".venv").exists() else "airflow",
            "pools",
            "list",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pools = {p["pool"] for p in json.loads(listing.stdout[listing.stdout.index("[") :])}
    assert {
        f"currents_{n}"
        for n in ("treasure_data", "rudderstack", "zeotap", "custom_http", "segment", "mparticle")
    } <= pools


def test_load_settings_refuses_without_a_project_airflow_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_HOME"}
    done = load_settings(tmp_path, env)
    assert done.returncode == 1 and "AIRFLOW_HOME is not set" in done.stderr
    assert not (tmp_path / "airflow").exists()
