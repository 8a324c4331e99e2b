"""`currents-relay`: the same functions the DAGs call, from a shell.

currents-relay process  --landing URL --lake URL --hour 2026-11-01T10 [--dry-run]
currents-relay generate --landing URL --hour 2026-11-01T10 [--events N] [--seed N]
currents-relay push     --lake URL --destination NAME --hour 2026-11-01T10 [--dry-run]
currents-relay replay   --lake URL --destination NAME --hour H [--to-hour H] [--resend-acknowledged]
currents-relay report   --lake URL --hour H
currents-relay lake files --lake URL --hour H [--event-type T]
currents-relay lake gc    --lake URL [--hour H]
currents-relay docs     --lake URL --hour H [--out DIR]

Every command writes exactly one JSON document to stdout (`push`: the destination's counts;
`replay`: `{"hours": [counts, ...]}`) and every log line to stderr, so
`currents-relay push ... | jq .delivered` works; `lake files` prints one URL a line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from currents_relay.hours import parse_hour
from currents_relay.ingest.landing import LandingError
from currents_relay.lake.leases import LeaseHeld
from currents_relay.lake.versions import CommitConflict


def _hour(text: str):
    try:
        return parse_hour(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="currents-relay", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def shared(*arguments: tuple[str, dict[str, Any]]) -> argparse.ArgumentParser:
        options = argparse.ArgumentParser(add_help=False)
        for flag, spec in arguments:
            options.add_argument(flag, **spec)
        return options

    lake = shared(("--lake", {"required": True, "help": "lake root URL (path, s3://)"}))
    hour = shared(("--hour", {"required": True, "type": _hour, "help": "UTC hour: 2026-11-01T10"}))
    bounds = shared(
        ("--min-time", {"type": int, "help": "quarantine events before this UNIX time"}),
        ("--max-time", {"type": int, "help": "quarantine events after this UNIX time"}),
    )

    def command(name: str, run: Any, text: str, *parents: argparse.ArgumentParser) -> Any:
        sub = commands.add_parser(name, help=text, parents=list(parents))
        sub.set_defaults(run=run)
        return sub

    process = command("process", _process, "ingest one hour into the lake", lake, hour, bounds)
    process.add_argument("--landing", required=True, help="landing zone URL (path, s3://, gs://)")
    process.add_argument(
        "--dry-run", action="store_true", help="validate and report, write nothing"
    )
    process.add_argument(
        "--validation-engine",
        choices=("arrow", "gx"),
        default="arrow",
        help="run the suites vectorised (arrow) or with Great Expectations (gx)",
    )

    generate = command("generate", _generate, "write a realistic demo hour of exports", hour)
    generate.add_argument("--landing", required=True)
    generate.add_argument("--events", type=int, default=30_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--no-faults", action="store_true", help="no bad rows or bad files")

    destination = shared(
        ("--destination", {"required": True, "help": "a name from destinations.toml"})
    )
    push = command("push", _deliver, "deliver one hour to one destination", lake, hour, destination)
    push.add_argument("--dry-run", action="store_true", help="build batches, send nothing")
    replay = command(
        "replay", _deliver, "redeliver pending events and dead letters", lake, hour, destination
    )
    replay.add_argument("--to-hour", type=_hour, help="last hour of the range (default: --hour)")
    replay.add_argument("--no-dead-letters", action="store_true", help="only pending events")
    replay.add_argument(
        "--resend-acknowledged",
        action="store_true",
        help="also send again the events the destination acknowledged (recorded as resent): for "
        "partners that accept first and check later, e.g. Treasure Data after a wrong write key",
    )

    command("report", _report, "merge and print an hour's report", lake, hour)
    docs_help = "validate an hour with Great Expectations, build its Data Docs"
    docs = command("docs", _docs, docs_help, lake, hour, bounds)
    docs.add_argument("--out", help="GX project folder (default: <lake>/data_docs/hour=<h>)")

    lake_commands = commands.add_parser("lake", help="read the lake's hours; clean it up")
    lake_commands = lake_commands.add_subparsers(dest="lake_command", required=True)
    files = lake_commands.add_parser(
        "files", help="an hour's live Parquet files", parents=[lake, hour]
    )
    files.add_argument("--event-type", help="only this event type's files")
    files.set_defaults(run=_lake)
    gc = lake_commands.add_parser(
        "gc", help="delete replaced and uncommitted versions", parents=[lake]
    )
    gc.add_argument("--hour", type=_hour, help="only this hour (default: every hour)")
    gc.add_argument(
        "--grace",
        type=float,
        help="seconds a replaced version stays (default: CURRENTS_RELAY_GRACE_SECONDS or 86400)",
    )
    gc.set_defaults(run=_lake)

    sandbox = command("sandbox", _sandbox, "run loopback servers that behave like the partners")
    sandbox.add_argument(
        "--base-port", type=int, help="first port (default: airflow_settings.yaml's)"
    )
    sandbox.add_argument("--record", help="append every accepted event to this JSON-lines file")
    sandbox.add_argument("--fail-rate", type=float, default=0.0, help="share of requests that fail")
    sandbox.add_argument("--statuses", default="429,503", help="statuses injected when failing")
    sandbox.add_argument(
        "--retry-after", type=float, help="Retry-After seconds on injected failures"
    )
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    sandbox.add_argument(
        "--rate-limit", type=float, help="answer 429 above this many requests a second"
    )

    settings = command("load-settings", _load_settings, "load airflow_settings.yaml into Airflow")
    settings.add_argument("path", nargs="?", default="airflow_settings.yaml")
    return parser


def logs_to_stderr() -> None:
    """Every log line to stderr, INFO and up (stdout holds the command's JSON document only).
    Called again once Airflow is imported: its logging set-up writes to stdout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in (
        "airflow",
        "fsspec",
        "urllib3",
        "botocore",
        "aiobotocore",
        "s3fs",
        "great_expectations",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _deliver(args: argparse.Namespace) -> int:
    from currents_relay.delivery.engine import DeliveryError
    from currents_relay.delivery.partner import Endpoint
    from currents_relay.delivery.push import connection_outside_tasks, last_counts, push_hour
    from currents_relay.delivery.replay import replay_hours
    from currents_relay.destinations import destinations
    from currents_relay.hours import hour_key

    if args.destination not in destinations():
        raise LookupError(
            f"unknown destination {args.destination!r} (known: {', '.join(destinations())})"
        )
    endpoint = Endpoint.from_connection(connection_outside_tasks(f"currents_{args.destination}"))
    logs_to_stderr()
    if args.command == "replay":
        results: list[dict[str, Any]] = []
        try:
            for counts in replay_hours(
                args.lake,
                args.destination,
                endpoint,
                args.hour,
                args.to_hour or args.hour,
                dead_letters=not args.no_dead_letters,
                resend_acknowledged=args.resend_acknowledged,
            ):
                results.append(counts)
        except DeliveryError as error:
            print(f"currents-relay: {error}", file=sys.stderr)
        print(json.dumps({"hours": results}))
        for counts in results:
            if counts.get("error"):
                print(f"currents-relay: {counts['hour']}: {counts['error']}", file=sys.stderr)
        return 1 if any(c.get("error") for c in results) else 0
    hour = hour_key(args.hour)
    try:
        counts = push_hour(args.lake, hour, args.destination, endpoint, dry_run=args.dry_run)
    except DeliveryError as error:
        print(f"currents-relay: {error}", file=sys.stderr)
        counts = last_counts(args.lake, hour, args.destination)
        print(json.dumps(counts | {"error": str(error)}))
        return 1
    print(json.dumps(counts))
    return 0


def _lake(args: argparse.Namespace) -> None:
    from currents_relay.hours import hour_key
    from currents_relay.lake import Lake
    from currents_relay.lake.leases import Lease
    from currents_relay.lake.versions import (
        collect_garbage,
        committed_hours,
        forget_superseded,
        live_files,
        read_committed,
    )

    lake = Lake(args.lake)
    if args.lake_command == "files":
        for url in live_files(lake, hour_key(args.hour), args.event_type):
            print(url)
        return
    hours = [hour_key(args.hour)] if args.hour else committed_hours(lake)
    deleted = 0
    for hour in hours:
        with Lease(lake, hour, "process", "lake gc"):
            committed = read_committed(lake, hour)
            collected = collect_garbage(lake, hour, committed, args.grace, orphans=True)
            if committed is not None:
                forget_superseded(lake, hour, committed, collected)
            deleted += len(collected.deleted)
    print(json.dumps({"hours": len(hours), "deleted_files": deleted}))


def _docs(args: argparse.Namespace) -> None:
    from pathlib import Path

    from currents_relay.hours import hour_key
    from currents_relay.lake import Lake
    from currents_relay.validation.docs import build_docs
    from currents_relay.validation.suites import TimeBounds

    hour = hour_key(args.hour)
    lake = Lake(args.lake)
    if args.out is None and not lake.local:
        raise ValueError("--out is needed for a lake on object storage (a local folder)")
    out = Path(args.out) if args.out else Path(lake.path(f"data_docs/hour={hour}"))
    bounds = TimeBounds(args.min_time, args.max_time)
    print(json.dumps(build_docs(args.lake, hour, out, bounds), indent=2))


def _process(args: argparse.Namespace) -> None:
    from currents_relay.hours import hour_key
    from currents_relay.ingest.hour import process_hour
    from currents_relay.lake import Lake
    from currents_relay.lake.reports import write_report
    from currents_relay.validation.suites import TimeBounds

    report = process_hour(
        args.landing,
        args.lake,
        args.hour,
        dry_run=args.dry_run,
        bounds=TimeBounds(args.min_time, args.max_time),
        validation_engine=args.validation_engine,
    )
    if not args.dry_run:
        report = write_report(Lake(args.lake), hour_key(args.hour)) or report
    print(json.dumps(report, indent=2))


def _generate(args: argparse.Namespace) -> None:
    from currents_relay.tools.generator import generate_hour

    faults = not args.no_faults
    summary = generate_hour(args.landing, args.hour, args.events, args.seed, faults=faults)
    print(json.dumps(summary.to_dict(), indent=2))


def _report(args: argparse.Namespace) -> None:
    from currents_relay.hours import hour_key
    from currents_relay.lake import Lake
    from currents_relay.lake.reports import write_report
    from currents_relay.lake.versions import NotProcessed

    report = write_report(Lake(args.lake), hour_key(args.hour))
    if report is None:
        raise NotProcessed(f"hour {hour_key(args.hour)} was never processed into {args.lake}")
    print(json.dumps(report, indent=2))


def _sandbox(args: argparse.Namespace) -> None:
    from currents_relay.tools.sandbox import serve

    serve(args)


def _load_settings(args: argparse.Namespace) -> None:
    from pathlib import Path

    from currents_relay.tools.airflow_settings import load_settings

    print(json.dumps(load_settings(Path(args.path))))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs_to_stderr()
    try:
        return args.run(args) or 0
    except (LandingError, LookupError, ValueError, OSError, LeaseHeld, CommitConflict) as error:
        print(f"currents-relay: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
