"""One real Airflow for the session, started as `make airflow` starts it, stopped as Ctrl-C does.

`pytest -m "not live"` skips these tests locally; CI runs them. They need the sandbox's
ports (18081-18086) free, as `make airflow` does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from currents_relay.hours import parse_hour
from currents_relay.tools.generator import generate_hour
from tests.conftest import ROOT

HOURS = ["2026-11-03T00", "2026-11-03T01", "2026-11-03T02", "2026-11-03T05"]
SANDBOX_PORTS = range(18081, 18087)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Live:
    url: str
    port: int
    home: Path
    landing: Path
    lake: Path
    password: str
    token: str
    database: str | None

    def api(self, method: str, path: str, headers: dict | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def runs(self, dag_id: str = "currents_hourly") -> list[dict]:
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        answer.raise_for_status()
        return answer.json()["dag_runs"]

    def wait_for(self, run_ids: list[str], timeout: float = 300.0) -> dict[str, dict]:
        """The runs once each has ended (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {r["dag_run_id"]: r for r in self.runs() if r["dag_run_id"] in run_ids}
            if len(found) == len(run_ids) and all(
                r["state"] in ("success", "failed") for r in found.values()
            ):
                return found
            time.sleep(2)
        raise AssertionError(f"runs did not end within {timeout:.0f} s: {run_ids}")

    def task_states(self, run_id: str, dag_id: str = "currents_hourly") -> dict[str, str]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        answer = self.api("GET", path)
        answer.raise_for_status()
        return {t["task_id"]: t["state"] for t in answer.json()["task_instances"]}

    def sandbox_stats(self) -> dict[int, dict]:
        return {
            port: requests.get(f"http://127.0.0.1:{port}/__sandbox/stats", timeout=10).json()
            for port in SANDBOX_PORTS
        }

    def backfills_done(self, dag_id: str = "currents_hourly", timeout: float = 120.0) -> None:
        """Wait until no backfill of the DAG is running (one may run at a time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.api("GET", "/api/v2/backfills", params={"dag_id": dag_id})
            answer.raise_for_status()
            if all(b.get("completed_at") for b in answer.json()["backfills"]):
                return
            time.sleep(2)
        raise AssertionError(f"a backfill of {dag_id} is still running after {timeout:.0f} s")

    def airflow(self, *args: str) -> subprocess.CompletedProcess:
        from currents_relay.tools.local_airflow import airflow_env

        env = airflow_env(self.home, self.port, str(self.landing), str(self.lake), self.database)
        done = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, (
            f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
        return done


def _airflow_processes(home: Path) -> list[int]:
    """Processes whose environment names this Airflow home."""
    found = []
    needle = f"AIRFLOW_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextmanager
def metadata_database():
    """A fresh PostgreSQL database where PostgreSQL runs on 127.0.0.1 (as in production: the
    scheduler, the API server and a backfill write at once), else None (SQLite)."""
    try:
        import psycopg2

        admin = psycopg2.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", connect_timeout=3
        )
    except Exception:
        yield None
        return
    admin.autocommit = True
    name = f"currents_live_{os.getpid()}"
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    with metadata_database() as database:
        yield from _live(tmp_path_factory, database)


def _live(tmp_path_factory, database: str | None):
    for port in SANDBOX_PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use (is `make airflow` running?)")
    root = tmp_path_factory.mktemp("live")
    landing, lake, home = root / "landing", root / "lake", root / "home"
    for hour in HOURS:
        generate_hour(str(landing), parse_hour(hour), events=2_000)
    port = free_port()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "currents_relay.tools.local_airflow",
            *("--port", str(port), "--home", str(home)),
            *("--landing", str(landing), "--lake", str(lake), "--no-demo"),
            *(("--database-url", database) if database else ()),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = launcher.stdout.readline()
        if not line and launcher.poll() is not None:
            break
        lines.append(line)
        if line.startswith("Airflow UI: "):
            break
    log = home / "airflow.log"
    if not lines or not lines[-1].startswith("Airflow UI: "):
        launcher.kill()
        tail = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail("Airflow did not start:\n" + "".join(lines) + tail)
    url = lines[-1].split(": ", 1)[1].strip()
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    answer = requests.post(
        f"{url}/auth/token",
        json={"username": "admin", "password": password["admin"]},
        timeout=30,
    )
    answer.raise_for_status()
    token = answer.json()["access_token"]
    yield Live(url, port, home, landing, lake, password["admin"], token, database)
    launcher.send_signal(signal.SIGINT)  # what Ctrl-C sends
    launcher.wait(timeout=90)
    launcher.stdout.close()
    deadline = time.monotonic() + 30
    while _airflow_processes(home) and time.monotonic() < deadline:
        time.sleep(1)
    left = _airflow_processes(home)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after SIGINT: {left}"
