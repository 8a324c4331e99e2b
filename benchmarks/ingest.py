"""Ingest benchmark: a generated hour (both formats) through `process_hour`, beside an anchor.

    python benchmarks/ingest.py [--events 1000000]

Prints events/s, CPU seconds and peak RSS of our ingest (run in a child process ; its peak RSS is
read from its own VmHWM, since ru_maxrss survives exec and would report the parent's), beside the raw `pyarrow.json.read_json` -> `Table.flatten` ->
`pyarrow.parquet.write_table` on the same events (as one NDJSON file) in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOUR = "2026-11-01T10"

CHILD_OURS = """
import json, sys, time
from currents_relay.hours import parse_hour
from currents_relay.ingest import process_hour
start = time.perf_counter()
report = process_hour(sys.argv[1], sys.argv[2], parse_hour(sys.argv[3]))
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "events": report["events"], "peak_rss_mb": peak}))
"""

CHILD_ANCHOR = """
import json, sys, time
import pyarrow.json as pj, pyarrow.parquet as pq
start = time.perf_counter()
table = pj.read_json(sys.argv[1]).flatten()
pq.write_table(table, sys.argv[2], compression="zstd")
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "events": table.num_rows, "peak_rss_mb": peak}))
"""


def run_child(code: str, *args: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    from currents_relay.generator import generate_hour
    from currents_relay.hours import parse_hour

    with tempfile.TemporaryDirectory(prefix="currents-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        summary = generate_hour(
            str(root / "landing"),
            parse_hour(HOUR),
            events=args.events,
            faults=False,
            file_events=15_000,
        )
        print(
            f"generated {summary.events:,} events in {summary.files} files in {time.perf_counter() - started:.0f} s"
        )
        ndjson = root / "events.ndjson"
        with ndjson.open("w") as out:
            for path in sorted((root / "landing" / "http").rglob("*.json")):
                for event in json.loads(path.read_text())["events"]:
                    out.write(json.dumps(event) + "\n")
        ours = run_child(CHILD_OURS, str(root / "landing"), str(root / "lake"), HOUR)
        anchor = run_child(CHILD_ANCHOR, str(ndjson), str(root / "anchor.parquet"))
        ours_rate = ours["events"]["read"] / ours["seconds"]
        anchor_rate = anchor["events"] / anchor["seconds"]
        print("\n| run | events | seconds | events/s | CPU s | peak RSS MB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print(
            f"| currents-relay process_hour (Avro + HTTP, GX, dedup, lake) | {ours['events']['read']:,} | "
            f"{ours['seconds']:.1f} | {ours_rate:,.0f} | {ours['cpu']:.1f} | {ours['peak_rss_mb']:,.0f} |"
        )
        print(
            f"| anchor: pyarrow read_json + flatten + write_table (HTTP part only) | {anchor['events']:,} | "
            f"{anchor['seconds']:.1f} | {anchor_rate:,.0f} | {anchor['cpu']:.1f} | {anchor['peak_rss_mb']:,.0f} |"
        )
        print(f"\nratio (ours / anchor events/s): {ours_rate / anchor_rate:.2f}")


if __name__ == "__main__":
    main()
