"""`make run`: generate a demo hour and run it through real Airflow, then show the result.

Steps: write a realistic hour of exports into the landing zone, start the partner sandbox on
loopback, migrate a local Airflow (SQLite, `AIRFLOW_HOME` inside the project) and load
`airflow_settings.yaml` into it (connections to the sandbox, pools, variables), run
`airflow dags test currents_hourly` for that hour, and print the report the `report` task
wrote into the lake beside what the sandbox received.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from currents_relay.hours import date_partition, hour_key, parse_hour

PROJECT = Path.cwd()


def start_sandbox(record: Path):
    """The partner sandbox on the ports `airflow_settings.yaml` points the connections at."""
    from currents_relay.destinations import enabled_destinations
    from currents_relay.tools.sandbox import DEFAULT_PORTS, Sandbox

    names = [d.partner for d in enabled_destinations()]
    sandbox = Sandbox(names=names, ports={n: DEFAULT_PORTS[n] for n in names}, record=record)
    try:
        sandbox.start()
    except OSError as error:
        sandbox.stop()
        raise SystemExit(
            f"cannot start the sandbox ({error}): is `currents-relay sandbox` already running?"
        ) from None
    return sandbox


def print_deliveries(report: dict, received: dict[str, dict]) -> None:
    """Per destination: what the report says beside what the sandbox received."""
    print(
        f"\n{'destination':14s} {'selected':>9s} {'skipped':>8s} {'delivered':>9s} {'pending':>8s}"
        f" {'dead':>5s} {'requests':>8s} | {'sandbox got':>11s} {'twice':>6s}"
    )
    for name, c in report.get("destinations", {}).items():
        got = received.get(name, {})
        print(
            f"{name:14s} {c['selected']:9,d} {sum(c['skipped'].values()):8,d} {c['delivered']:9,d}"
            f" {c['pending']:8,d} {c['dead_lettered']:5,d} {c['requests']:8,d} |"
            f" {got.get('unique_events', 0):11,d} {got.get('duplicates', 0):6,d}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--landing", default=str(PROJECT / "data" / "landing"))
    parser.add_argument("--lake", default=str(PROJECT / "data" / "lake"))
    parser.add_argument("--hour", default="2026-11-01T10", type=parse_hour)
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args(argv)
    from currents_relay.tools.generator import generate_hour

    started = time.monotonic()
    hour = hour_key(args.hour)
    for stale in Path(args.landing).glob(f"**/date={date_partition(args.hour)}"):
        shutil.rmtree(stale)
    for stale in ("deliveries", "dead_letter", f"reports/hour={hour}"):  # deliver all again
        shutil.rmtree(Path(args.lake) / stale, ignore_errors=True)
    summary = generate_hour(args.landing, args.hour, events=args.events)
    print(f"1. generated {summary.events:,} events in {summary.files} files for hour {hour}")

    from currents_relay.tools.local_airflow import AIRFLOW, airflow_env, prepare, run_logged

    home = Path(os.environ.get("AIRFLOW_HOME") or PROJECT / ".airflow")
    env = airflow_env(home, 8080, args.landing, args.lake)
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    home.mkdir(parents=True, exist_ok=True)
    log = Path(env["AIRFLOW_HOME"]) / "make-run.log"
    log.write_text("")
    record = Path(args.lake).parent / "sandbox-accepted.jsonl"
    record.unlink(missing_ok=True)
    sandbox = start_sandbox(record)
    try:
        urls = ", ".join(f"{n} {u}" for n, u in sandbox.urls().items())
        print(f"2. partner sandbox on loopback: {urls}")
        prepare(env, log)
        print(f"3. local Airflow ready in {env['AIRFLOW_HOME']}, airflow_settings.yaml loaded")
        test = [AIRFLOW, "dags", "test", "currents_hourly", "-c", json.dumps({"hour": hour})]
        run_logged(test, env, log)
        print(f"4. airflow dags test currents_hourly (hour={hour}) succeeded; logs: {log}")
        received = {name: sim.stats() for name, sim in sandbox.sims.items()}
    finally:
        sandbox.stop()

    report = json.loads((Path(args.lake) / "reports" / f"hour={hour}.json").read_text())
    shown = {k: report[k] for k in ("hour", "files", "events", "quarantine_reasons")}
    print(json.dumps(shown, indent=2))
    events = report["events"]
    assert events["read"] == events["written"] + events["quarantined"] + events["duplicates"]
    print_deliveries(report, received)
    print(f"\nLake: {args.lake} ({len(report['by_event_type'])} event types; report in reports/)")
    print(
        f"Its live files: currents-relay lake files --lake {args.lake} --hour {hour}\n"
        "Read them with DuckDB: SELECT event_type, count(*) FROM read_parquet([<those files>], "
        "union_by_name=true) GROUP BY 1;"
    )
    print(f"Sandbox record of every accepted event: {record}")
    print(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
