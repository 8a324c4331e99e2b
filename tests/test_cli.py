"""The CLI: the report on stdout, clear one-line errors and non-zero exits."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import HOUR


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
