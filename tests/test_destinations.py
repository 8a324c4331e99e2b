"""The destinations file is configuration found outside the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from currents_relay.destinations import ENVIRONMENT, destinations, destinations_file
from tests.conftest import ROOT


def test_the_projects_file_is_the_default():
    assert destinations_file() == ROOT / "destinations.toml"
    assert "segment" in destinations()


def test_an_environment_variable_names_another_file(tmp_path, monkeypatch):
    mine = tmp_path / "mine.toml"
    mine.write_text('[warehouse_hook]\npartner = "custom_http"\ninclude = ["users.messages.*"]\n')
    monkeypatch.setenv(ENVIRONMENT, str(mine))
    (only,) = destinations().values()
    assert only.name == "warehouse_hook" and only.options["include"] == ["users.messages.*"]
    mine.write_text('[other]\npartner = "zeotap"\n')  # edited: read again
    assert list(destinations()) == ["other"]


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml: no such file"):
        destinations()
    broken = tmp_path / "broken.toml"
    broken.write_text("[segment\n")
    monkeypatch.setenv(ENVIRONMENT, str(broken))
    with pytest.raises(ValueError, match=r"broken\.toml"):
        destinations()
    broken.write_text('[x]\npartner = "nobody"\n')
    with pytest.raises(ValueError, match="unknown partner 'nobody'"):
        destinations()


def test_the_dags_take_their_tasks_from_the_file_named(tmp_path):
    mine = tmp_path / "two.toml"
    mine.write_text('[zeotap]\n[segment]\nenabled = false\n[hook]\npartner = "custom_http"\n')
    code = "import currents_hourly as d; print(sorted(d.DESTINATIONS))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "dags",
        env={
            "PATH": "/usr/bin:/bin",
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),  # as deployed beside dags/
            ENVIRONMENT: str(mine),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['hook', 'zeotap']"
