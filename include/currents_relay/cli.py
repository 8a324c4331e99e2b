"""`currents-relay`: the same functions the DAGs call, from a shell.

currents-relay process  --landing URL --lake URL --hour 2026-11-01T10 [--dry-run]
currents-relay generate --landing URL --hour 2026-11-01T10 [--events N] [--seed N]
currents-relay push     --lake URL --destination NAME --hour 2026-11-01T10 [--dry-run]
currents-relay replay   --lake URL --destination NAME --hour H [--to-hour H]

Every command writes exactly one JSON document to stdout (`push` and `replay` of one hour:
the destination's counts; of several hours: `{"hours": [counts, ...]}`) and every log line
to stderr, so `currents-relay push ... | jq .delivered` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from currents_relay.landing import LandingError, parse_hour


def _hour(text: str):
    try:
        return parse_hour(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="currents-relay", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    process = commands.add_parser(
        "process", help="ingest one hour into the lake and print its report"
    )
    process.add_argument("--landing", required=True, help="landing zone URL (path, s3://, gs://)")
    process.add_argument("--lake", required=True, help="lake root URL")
    process.add_argument("--hour", required=True, type=_hour, help="UTC hour, e.g. 2026-11-01T10")
    process.add_argument(
        "--dry-run", action="store_true", help="validate and report, write nothing"
    )
    process.add_argument("--min-time", type=int, help="quarantine events before this UNIX time")
    process.add_argument("--max-time", type=int, help="quarantine events after this UNIX time")
    process.add_argument(
        "--validation-engine",
        choices=("arrow", "gx"),
        default="arrow",
        help="run the suites vectorised (arrow) or with Great Expectations (gx)",
    )

    generate = commands.add_parser("generate", help="write a realistic demo hour of exports")
    generate.add_argument("--landing", required=True)
    generate.add_argument("--hour", required=True, type=_hour)
    generate.add_argument("--events", type=int, default=30_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--no-faults", action="store_true", help="no bad rows or bad files")

    for name, text in (
        ("push", "deliver one hour of the lake to one destination"),
        ("replay", "redeliver pending events and dead letters of an hour range"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--lake", required=True)
        command.add_argument("--destination", required=True, help="a name from destinations.toml")
        command.add_argument("--hour", required=True, type=_hour)
        if name == "replay":
            command.add_argument(
                "--to-hour", type=_hour, help="last hour of the range (default: --hour)"
            )
            command.add_argument(
                "--no-dead-letters", action="store_true", help="only pending events"
            )
        else:
            command.add_argument(
                "--dry-run", action="store_true", help="build batches, send nothing"
            )

    sandbox = commands.add_parser(
        "sandbox", help="run loopback servers that behave like the partners"
    )
    sandbox.add_argument(
        "--base-port", type=int, help="first port (default: the ports in airflow_settings.yaml)"
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

    settings = commands.add_parser(
        "load-settings", help="load airflow_settings.yaml into the local Airflow"
    )
    settings.add_argument("path", nargs="?", default="airflow_settings.yaml")
    return parser


def logs_to_stderr() -> None:
    """Every log line to stderr, INFO and up (stdout holds the command's JSON document only).
    Called again once Airflow is imported: its logging set-up writes to stdout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("airflow", "fsspec", "urllib3", "botocore", "s3fs", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _deliver(args: argparse.Namespace) -> int:
    from currents_relay.delivery.engine import DeliveryError
    from currents_relay.delivery.partner import Endpoint
    from currents_relay.delivery.push import connection_outside_tasks, last_counts, push_hour
    from currents_relay.destinations import destinations
    from currents_relay.hours import hour_key, hour_range

    if args.destination not in destinations():
        raise LookupError(
            f"unknown destination {args.destination!r} (known: {', '.join(destinations())})"
        )
    endpoint = Endpoint.from_connection(connection_outside_tasks(f"currents_{args.destination}"))
    logs_to_stderr()
    last = getattr(args, "to_hour", None) or args.hour
    replay = args.command == "replay" and not args.no_dead_letters
    failed = False
    results: list[dict[str, Any]] = []
    for hour in hour_range(args.hour, last):
        try:
            counts = push_hour(
                args.lake,
                hour_key(hour),
                args.destination,
                endpoint,
                dry_run=getattr(args, "dry_run", False),
                replay=replay,
            )
        except DeliveryError as error:
            print(f"currents-relay: {error}", file=sys.stderr)
            failed = True
            counts = last_counts(args.lake, hour_key(hour), args.destination) or {
                "destination": args.destination,
                "hour": hour_key(hour),
                "error": str(error),
            }
        results.append(counts)
    print(json.dumps(results[0] if len(results) == 1 else {"hours": results}))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs_to_stderr()
    try:
        if args.command == "process":
            from currents_relay.ingest import process_hour, write_report
            from currents_relay.validation import TimeBounds

            report = process_hour(
                args.landing,
                args.lake,
                args.hour,
                dry_run=args.dry_run,
                bounds=TimeBounds(args.min_time, args.max_time),
                validation_engine=args.validation_engine,
            )
            if not args.dry_run:
                write_report(args.lake, report)
            print(json.dumps(report, indent=2))
        elif args.command == "generate":
            from currents_relay.generator import generate_hour

            summary = generate_hour(
                args.landing,
                args.hour,
                events=args.events,
                seed=args.seed,
                faults=not args.no_faults,
            )
            print(json.dumps(summary.to_dict(), indent=2))
        elif args.command in ("push", "replay"):
            return _deliver(args)
        elif args.command == "sandbox":
            from pathlib import Path

            from currents_relay.sandbox import serve

            serve(
                args.base_port,
                Path(args.record) if args.record else None,
                args.fail_rate,
                [int(s) for s in args.statuses.split(",")],
                args.retry_after,
                args.latency,
                args.rate_limit,
            )
        elif args.command == "load-settings":
            from pathlib import Path

            from currents_relay.airflow_settings import load_settings

            print(json.dumps(load_settings(Path(args.path))))
    except (LandingError, LookupError, ValueError, OSError) as error:
        print(f"currents-relay: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
