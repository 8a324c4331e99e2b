"""What the benchmarks share: generated hours (cached by size), child runs, peak memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HOUR = "2026-11-01T10"

# Prepended to every child: its own peak RSS (ru_maxrss survives exec and would report ours).
PEAK = """
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
"""


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; its last stdout line is a JSON result. Adds `cpu`
    (the child's user + system seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", PEAK + code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def landing_of(work: Path, events: int, full: bool = False, lines: bool = False) -> Path:
    """A generated hour of `events` mixed events under `work` (same seed, so kept between
    runs); `full`: every schema field filled; `lines`: Custom HTTP as JSON-lines files."""
    from currents_relay.hours import parse_hour
    from currents_relay.tools.generator import generate_hour

    landing = work / f"landing-{events}{'-full' if full else ''}{'-lines' if lines else ''}"
    done = landing / ".complete"
    if done.exists():
        return landing
    subprocess.run(["rm", "-rf", str(landing)], check=True)
    started = time.perf_counter()
    summary = generate_hour(
        str(landing),
        parse_hour(HOUR),
        events=events,
        faults=False,
        file_events=15_000,
        full_fields=full,
        http_lines=lines,
    )
    done.write_text(json.dumps(summary.to_dict()))
    print(
        f"generated {summary.events:,} events in {summary.files:,} files "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return landing


def lake_of(work: Path, events: int) -> Path:
    """The ingested lake of the generated hour of `events` (kept between runs)."""
    landing = landing_of(work, events)
    lake = work / f"lake-{events}"
    if not (lake / "manifests").exists():
        from currents_relay.hours import parse_hour
        from currents_relay.ingest.hour import process_hour

        process_hour(str(landing), str(lake), parse_hour(HOUR))
    return lake
