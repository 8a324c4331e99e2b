"""The CLI: the report on stdout, clear one-line errors and non-zero exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_load_settings_refuses_without_a_project_airflow_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_HOME"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "currents_relay.cli",
            "load-settings",
            str(ROOT / "airflow_settings.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "AIRFLOW_HOME is not set" in done.stderr
    assert not (tmp_path / "airflow").exists()
