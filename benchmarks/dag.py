"""DAG benchmark: how long the scheduler's parser spends on our DAG file, and an empty hour.

    python benchmarks/dag.py [--runs 5]

1. Parse: in fresh interpreters, the time to execute `dags/currents_hourly.py` once the
   modules it imports are loaded (Airflow's DAG processor pre-imports them:
   `[dag_processor] parsing_pre_import_modules`), first and second parse; and the same with
   only `airflow.sdk` loaded, so Airflow's lazily loaded TaskFlow machinery is counted too.
   Medians of `--runs`.
2. `airflow dags test currents_hourly` of an hour with no files, in a throw-away
   `AIRFLOW_HOME` (migrated first, not timed): the whole DAG's fixed cost; beside it, the
   same command on a one-task DAG (Airflow's own floor: CLI start, in-process API server).
   The two alternate `--tests` times (a run of either moves by seconds on a shared
   machine); medians and ranges printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOUR = "2026-11-01T10"

PARSE = f"""
import json, runpy, sys, time
import airflow.sdk, airflow.providers.standard.sensors.date_time
if sys.argv[1] == "pre-imported":
    from airflow.sdk import Asset, Connection, CronDataIntervalTimetable, Param, Variable, dag, task
    import currents_relay.destinations, currents_relay.hours
seconds = []
for _ in range(2):
    start = time.perf_counter()
    runpy.run_path({str(ROOT / "dags" / "currents_hourly.py")!r})
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def parse_seconds(runs: int, mode: str) -> tuple[float, float]:
    """Median (first parse, second parse) seconds over `runs` fresh interpreters."""
    firsts, seconds = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PARSE, mode], capture_output=True, text=True, check=True
        )
        first, second = json.loads(done.stdout.strip().splitlines()[-1])
        firsts.append(first)
        seconds.append(second)
    return statistics.median(firsts), statistics.median(seconds)


FLOOR_DAG = """
from airflow.sdk import dag, task


@dag(schedule=None)
def floor():
    @task
    def noop() -> None:
        pass

    noop()


floor()
"""


def empty_hour_seconds(tests: int) -> tuple[list[float], list[float]]:
    from currents_relay.tools.demo import airflow_env

    airflow = str(Path(sys.executable).with_name("airflow"))
    with tempfile.TemporaryDirectory(prefix="currents-dag-bench-") as tmp:
        root = Path(tmp)
        (root / "landing").mkdir()
        env = airflow_env(str(root / "landing"), str(root / "lake"), ROOT / "dags")
        env["AIRFLOW_HOME"] = str(root / "airflow")

        def run(*command: str) -> None:
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(
                    f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )

        run(airflow, "db", "migrate")
        run(
            sys.executable,
            "-m",
            "currents_relay.cli",
            "load-settings",
            str(ROOT / "airflow_settings.yaml"),
        )
        (root / "floor").mkdir()
        (root / "floor" / "floor.py").write_text(FLOOR_DAG)
        ours, floors = [], []
        for _ in range(tests):
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
            started = time.perf_counter()
            run(airflow, "dags", "test", "currents_hourly", "-c", json.dumps({"hour": HOUR}))
            ours.append(time.perf_counter() - started)
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(root / "floor")
            started = time.perf_counter()
            run(airflow, "dags", "test", "floor")
            floors.append(time.perf_counter() - started)
        return ours, floors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=3, help="`dags test` runs of each DAG")
    args = parser.parse_args()
    pre_first, pre_second = parse_seconds(args.runs, "pre-imported")
    cold_first, _ = parse_seconds(args.runs, "cold")
    empty, floor = empty_hour_seconds(args.tests)
    print("| DAG measure | figure | target |")
    print("| --- | ---: | ---: |")
    print(
        f"| parse, its imports pre-loaded (as the DAG processor does): first / again "
        f"| {pre_first * 1000:.0f} / {pre_second * 1000:.0f} ms | < 100 ms |"
    )
    print(
        f"| parse, only `airflow.sdk` loaded (adds Airflow's lazy TaskFlow imports) "
        f"| {cold_first * 1000:.0f} ms | |"
    )
    print(
        f"| `airflow dags test` of an empty hour (whole CLI process), median (runs) "
        f"| {statistics.median(empty):.1f} s ({min(empty):.1f}-{max(empty):.1f}) | < 15 s |"
    )
    print(
        f"| the same on a one-task DAG (Airflow's floor) "
        f"| {statistics.median(floor):.1f} s ({min(floor):.1f}-{max(floor):.1f}) | |"
    )


if __name__ == "__main__":
    main()
