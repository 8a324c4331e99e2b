"""`make airflow`: the real Airflow for this project on this machine, until Ctrl-C.

Configures Airflow through the environment (nothing in `airflow.cfg` to edit): `AIRFLOW_HOME`
is the project's `.airflow`, the DAGs and plugins folders are the project's, no example DAGs,
LocalExecutor sized to the machine, the API server on 127.0.0.1, the simple auth manager with
an `admin` user whose generated password is kept in `.airflow`. Then: migrates the metadata
database, loads `airflow_settings.yaml` (connections to the sandbox, pools, variables),
starts the partner sandbox, writes a demo hour into an empty landing zone, and runs
`airflow standalone` (API server, scheduler, DAG processor, triggerer), its output in
`.airflow/airflow.log`. The first URL printed is the UI's (`Airflow UI: http://...`).
SIGINT or SIGTERM stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = Path.cwd()
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
PASSWORDS = "simple_auth_manager_passwords.json.generated"
DEMO_HOUR = "2026-11-01T10"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(
    home: Path, port: int, landing: str, lake: str, database: str | None = None
) -> dict[str, str]:
    """The environment of every Airflow process of this project (`database`: a SQLAlchemy
    URL of the metadata database; default: SQLite in the Airflow home)."""
    env = dict(os.environ)
    if database:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(max(4, 2 * (os.cpu_count() or 2))),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS),
        "AIRFLOW_VAR_CURRENTS_LANDING_URL": landing,
        "AIRFLOW_VAR_CURRENTS_LAKE_URL": lake,
        "GX_ANALYTICS_ENABLED": "false",
    }
    return env


def run_logged(command: list[str], env: dict[str, str], log: Path) -> None:
    """Run `command`, its output appended to `log`; exit with the log's end where it fails."""
    with log.open("a") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"`{' '.join(command[:4])}` failed (exit {done.returncode}); log: {log}")


def prepare(env: dict[str, str], log: Path) -> None:
    """Migrate the metadata database and load `airflow_settings.yaml` into it."""
    run_logged([AIRFLOW, "db", "migrate"], env, log)
    settings = str(PROJECT / "airflow_settings.yaml")
    run_logged([sys.executable, "-m", "currents_relay.cli", "load-settings", settings], env, log)


def wait_for_api(port: int, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"Airflow exited (code {process.returncode}) before its API answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"Airflow's API did not answer on port {port} within {timeout:.0f} s")


def admin_password(home: Path) -> str | None:
    try:
        return json.loads((home / PASSWORDS).read_text()).get("admin")
    except (OSError, ValueError):
        return None


def stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop `airflow standalone` and every process it started (its process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # anything left in the group
    process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--home", type=Path, default=PROJECT / ".airflow")
    parser.add_argument("--landing", default=str(PROJECT / "data" / "landing"))
    parser.add_argument("--lake", default=str(PROJECT / "data" / "lake"))
    parser.add_argument("--no-demo", action="store_true", help="no demo hour in the landing zone")
    parser.add_argument(
        "--database-url",
        help="the metadata database (e.g. postgresql+psycopg2://...; default: SQLite in --home)",
    )
    args = parser.parse_args(argv)
    from currents_relay.tools.demo import start_sandbox

    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, args.port, args.landing, args.lake, args.database_url)
    log = home / "airflow.log"
    log.write_text("")
    prepare(env, log)
    if not args.no_demo and not any(Path(args.landing).rglob("*.*")):
        from currents_relay.hours import parse_hour
        from currents_relay.tools.generator import generate_hour

        generate_hour(args.landing, parse_hour(DEMO_HOUR), events=30_000)
    sandbox = start_sandbox(Path(args.lake).parent / "sandbox-accepted.jsonl")
    process = subprocess.Popen(
        [AIRFLOW, "standalone"],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole
    )
    stopping = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also where a shell started it ignoring SIGINT
    try:
        wait_for_api(args.port, process)
        print(f"Airflow UI: http://127.0.0.1:{args.port}", flush=True)
        print(f"  login: admin / {admin_password(home) or '(see ' + str(home / PASSWORDS) + ')'}")
        print(f"  the Currents report: http://127.0.0.1:{args.port}/currents/")
        print(f"  Airflow's output: {log}; partner sandbox: {len(sandbox.sims)} partners")
        print(
            f"  trigger currents_hourly with hour={DEMO_HOUR} from the UI (the demo hour), or "
            "unpause it to run every hour; Ctrl-C stops everything",
            flush=True,
        )
        process.wait()
        print(f"Airflow exited (code {process.returncode}); see {log}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping Airflow and the sandbox...", flush=True)
        return 0
    finally:
        stop(process)
        sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
