"""`currents-relay`: the same functions the DAGs call, from a shell.

currents-relay process  --landing URL --lake URL --hour 2026-11-01T10 [--dry-run]
currents-relay generate --landing URL --hour 2026-11-01T10 [--events N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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

    generate = commands.add_parser("generate", help="write a realistic demo hour of exports")
    generate.add_argument("--landing", required=True)
    generate.add_argument("--hour", required=True, type=_hour)
    generate.add_argument("--events", type=int, default=30_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--no-faults", action="store_true", help="no bad rows or bad files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except (LandingError, OSError) as error:
        print(f"currents-relay: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
