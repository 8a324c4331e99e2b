"""Shared fixtures: the real Braze samples (read in place), generated hours, tmp lakes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A private Airflow for the whole test session: set before anything imports airflow.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="currents-relay-airflow-"))
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"

SAMPLES = Path(
    os.environ.get(
        "CURRENTS_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "currents-samples"
    )
)
HOUR = "2026-11-01T10"


def _need_samples() -> Path:
    if not (SAMPLES / "Avro").is_dir():
        pytest.skip(f"Braze samples not found at {SAMPLES} (set CURRENTS_SAMPLES)")
    return SAMPLES


@pytest.fixture(scope="session")
def samples() -> Path:
    return _need_samples()


def http_samples() -> list[Path]:
    return sorted((SAMPLES / "custom-http").rglob("*.json")) if SAMPLES.is_dir() else []


def avro_samples() -> list[Path]:
    return sorted((SAMPLES / "Avro").glob("*.avro")) if SAMPLES.is_dir() else []


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite Airflow metadata database in a temporary AIRFLOW_HOME."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield AIRFLOW_HOME
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, checked to refuse conditional writes that must fail (else
    the lease and commit tests would prove nothing); its endpoint and test credentials are in
    the environment (so subprocesses reach it) while it runs."""
    from tests.s3 import S3Server

    server = S3Server().start()
    try:
        assert server.refuses_failed_conditions(), "the S3 server accepts failed conditions"
        saved = {name: os.environ.get(name) for name in server.env()}
        os.environ.update(server.env())
        yield server
    finally:
        server.stop()
        for name, value in locals().get("saved", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3_lake(s3_server) -> str:
    """A lake URL in a new bucket of the local S3 server."""
    return f"s3://{s3_server.bucket()}/lake"


@pytest.fixture(scope="session")
def generated_hour(tmp_path_factory):
    """A generated demo hour (both formats, faults included) and what the generator wrote."""
    from currents_relay.hours import parse_hour
    from currents_relay.tools.generator import generate_hour

    landing = tmp_path_factory.mktemp("landing")
    summary = generate_hour(
        str(landing), parse_hour(HOUR), events=6_000, seed=11, file_events=1_000
    )
    return landing, summary
