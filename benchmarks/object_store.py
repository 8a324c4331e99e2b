"""Object-store benchmark: `process` and `push` of one hour with the landing zone and the lake
on S3 (moto's S3 server on 127.0.0.1), beside the same on a local disk.

    python benchmarks/object_store.py [--events 30000,1000000]

Each run is a child process, as an Airflow task would be (wall time, CPU seconds, peak RSS).
`read` is the anchor: listing the hour's landed files and reading them all with fsspec's
concurrent `cat`, nothing else (the storage's own speed). `push` sends to the Treasure Data
sandbox answering at once, so the figures show what the storage adds: reading the committed
version, the lease, one ledger object per request, the report. Target: S3 within 1.5x the
local disk. moto is an in-memory Python server on the
same 2 cores; a real S3 an internet away adds its round trips per object instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import HOUR, landing_of, run_child

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.s3 import S3Server  # noqa: E402  (the tests' S3 server: one definition)

PROCESS = """
import json, sys, time
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
landing, lake, hour = sys.argv[1:4]
started = time.perf_counter()
report = process_hour(landing, lake, parse_hour(hour))
print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": peak_mb(),
                  "events": report["events"]["written"]}))
"""

# The storage's own speed, from the same run: list the hour's landed files and read them all
# with fsspec's batch `cat` (concurrent on its event loop), no processing.
READ = """
import json, sys, time
from currents_relay.hours import parse_hour
from currents_relay.filesystems import filesystem
from currents_relay.ingest.landing import list_hour
landing, hour = sys.argv[1:3]
started = time.perf_counter()
files = list_hour(landing, parse_hour(hour))
fs, _ = filesystem(landing)
size = sum(len(data) for data in fs.cat([f.uri for f in files]).values())
print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": peak_mb(),
                  "events": len(files), "bytes": size}))
"""

PUSH = """
import json, sys, time
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import push_hour
lake, hour, url, secret = sys.argv[1:5]
endpoint = Endpoint(url, password=secret, extra={"database": "bench", "table": "events"})
started = time.perf_counter()
counts = push_hour(lake, hour, "treasure_data", endpoint)
assert counts["pending"] == 0, counts
print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": peak_mb(),
                  "events": counts["delivered"], "requests": counts["requests"]}))
"""


def upload(server: S3Server, landing: Path) -> str:
    """The landing zone copied into a new bucket; its URL."""
    import s3fs

    bucket = server.bucket()
    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    fs.put(str(landing) + "/", f"{bucket}/landing/", recursive=True)
    return f"s3://{bucket}/landing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", default="30000,1000000")
    args = parser.parse_args()
    work = ROOT / ".benchmarks"
    work.mkdir(exist_ok=True)
    from currents_relay.tools.sandbox import Sandbox

    server = S3Server().start()
    os.environ.update(server.env())
    try:
        assert server.refuses_failed_conditions(), "the S3 server accepts failed conditions"
        with Sandbox(names=["treasure_data"], check_bodies=False) as sandbox:
            url, secret = sandbox.urls()["treasure_data"], sandbox.sims["treasure_data"].secret
            print(
                f"{'events':>9} {'step':<13} {'local s':>8} {'S3 s':>8} {'ratio':>6} "
                f"{'local CPU':>9} {'S3 CPU':>7} {'S3 peak MB':>10}"
            )
            for events in (int(n) for n in args.events.split(",")):
                landing = landing_of(work, events)
                local_lake = work / f"object-store-lake-{events}"
                os.system(f"rm -rf {local_lake}")
                places = {"local": (str(landing), str(local_lake))}
                s3_landing = upload(server, landing)
                places["s3"] = (s3_landing, s3_landing.removesuffix("landing") + "lake")
                results: dict[str, dict[str, dict]] = {"read": {}, "process": {}, "push": {}}
                for where, (land, lake) in places.items():
                    results["read"][where] = run_child(READ, land, HOUR)
                    results["process"][where] = run_child(PROCESS, land, lake, HOUR)
                    sandbox.sims["treasure_data"].reset()
                    results["push"][where] = run_child(PUSH, lake, HOUR, url, secret)
                for step, runs in results.items():
                    local, s3 = runs["local"], runs["s3"]
                    assert local["events"] == s3["events"], (step, local, s3)
                    step = "read (anchor)" if step == "read" else step
                    print(
                        f"{events:>9,} {step:<13} {local['seconds']:>8.1f} {s3['seconds']:>8.1f} "
                        f"{s3['seconds'] / local['seconds']:>5.2f}x {local['cpu']:>9.1f} "
                        f"{s3['cpu']:>7.1f} {s3['peak_rss_mb']:>10.0f}"
                    )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
