"""`make run`: generate a demo hour and run it through real Airflow, then show the result.

Steps: write a realistic hour of exports into the landing zone, migrate a local Airflow
(SQLite, `AIRFLOW_HOME` inside the project), run `airflow dags test currents_hourly` for that
hour, and print the report the `report` task wrote into the lake.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from currents_relay.hours import date_partition, hour_key, parse_hour

PROJECT = Path.cwd()


def airflow_env(landing: str, lake: str, dags: Path) -> dict[str, str]:
    """The environment of a local, self-contained Airflow for this project."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(PROJECT / ".airflow"))
    env.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get(
                "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
            ),
            "AIRFLOW_VAR_CURRENTS_LANDING_URL": landing,
            "AIRFLOW_VAR_CURRENTS_LAKE_URL": lake,
            "GX_ANALYTICS_ENABLED": "false",
        }
    )
    return env


def _airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("a") as out:
        done = subprocess.run(
            [str(airflow), *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(
            f"`airflow {' '.join(args[:3])}` failed (exit {done.returncode}); full log: {log}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--landing", default=str(PROJECT / "data" / "landing"))
    parser.add_argument("--lake", default=str(PROJECT / "data" / "lake"))
    parser.add_argument("--hour", default="2026-11-01T10", type=parse_hour)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--dags", default=str(PROJECT / "dags"))
    args = parser.parse_args(argv)
    from currents_relay.generator import generate_hour

    started = time.monotonic()
    hour = hour_key(args.hour)
    for stale in Path(args.landing).glob(f"**/date={date_partition(args.hour)}"):
        shutil.rmtree(stale)
    summary = generate_hour(args.landing, args.hour, events=args.events)
    print(
        f"1. generated {summary.events:,} events in {summary.files} files for hour {hour} under {args.landing}"
    )

    env = airflow_env(args.landing, args.lake, Path(args.dags))
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log = Path(env["AIRFLOW_HOME"]) / "make-run.log"
    log.write_text("")
    _airflow(["db", "migrate"], env, log)
    print(f"2. local Airflow ready (AIRFLOW_HOME={env['AIRFLOW_HOME']})")
    _airflow(["dags", "test", "currents_hourly", "-c", json.dumps({"hour": hour})], env, log)
    print(f"3. airflow dags test currents_hourly (hour={hour}) succeeded; task logs: {log}")

    report = json.loads((Path(args.lake) / "reports" / f"hour={hour}.json").read_text())
    print(
        json.dumps(
            {k: report[k] for k in ("hour", "files", "events", "quarantine_reasons")}, indent=2
        )
    )
    events = report["events"]
    assert events["read"] == events["written"] + events["quarantined"] + events["duplicates"]
    print(
        f"\nLake: {args.lake}  ({len(report['by_event_type'])} event types, report in reports/hour={hour}.json)"
    )
    print(
        "Read it with DuckDB:  SELECT event_type, count(*) FROM read_parquet("
        f"'{args.lake}/events/*/*/*.parquet', union_by_name=true, hive_partitioning=true) GROUP BY 1;"
    )
    print(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
