"""Push benchmark: one ingested hour delivered to every destination's sandbox server.

    python benchmarks/push.py [--events 1000000] [--destinations treasure_data,segment]

Per destination, in a child process (the sandbox servers run in this one, as a partner would
in another process, in sink mode: bodies read but not parsed, so the server never hides the
client's speed): events/s, MB/s and requests/s of `Delivery.run` (reading the lake,
selection, encoding, batching at the partner's limits, sending, ledger appends), its peak
RSS (after its first run: a task's process pushes an hour once); beside a bare
`requests.Session` posting the same bodies (the first `--anchor-requests` of them) to the
same server, in another child, in the same run; how full the batches are
against the partner's binding limit; and the rate in the unit of the partner's documented
rate limit, where there is one (Segment: requests/s; mParticle: event batches/s, counted in
the bodies the anchor posts). Imports (numba's machine code among them) come before the
clock starts, as for every other library. Both are run `--repeat` times (ours from an
empty ledger each time) and their medians compared: on a shared 2-core machine one run of
either moves by 10-30%.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import HOUR, lake_of, run_child

EXTRA = {"treasure_data": {"database": "bench", "table": "events"}}
LOGIN = {"mparticle": "sandbox-mparticle-key"}
# Documented rates: Segment asks partners (Braze is one) for at most 50 requests/s, batch
# requests included; mParticle's Events API allows 270 event batches/s (a batch: one user's
# events; a bulk request holds up to 100 of them). The others document none.
RATE_LIMITS = {"segment": (50, "requests"), "mparticle": (270, "batches")}

SETUP = """
import json, sys, time
from currents_relay.delivery import json_kernel
from currents_relay.delivery.engine import Delivery, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import enabled_destinations
lake, hour, name, url, secret, login, extra = sys.argv[1:8]
destination = next(d for d in enabled_destinations() if d.name == name)
endpoint = Endpoint(url, login=login or None, password=secret, extra=json.loads(extra))
partner = build_partner(destination, endpoint)
json_kernel.load()  # numba's machine code, loaded before the clock like any import
"""

CHILD_OURS = (
    SETUP
    + """
import shutil, statistics
runs = []
for _ in range(int(sys.argv[8])):
    shutil.rmtree(f"{lake}/deliveries", ignore_errors=True)  # nothing acknowledged yet
    partner = build_partner(destination, endpoint)
    started = time.perf_counter()
    counts = Delivery(lake, hour, partner, Selection()).run()
    runs.append(time.perf_counter() - started)
    if len(runs) == 1:
        peak = peak_mb()  # a task's process pushes an hour once: its first run's high-water mark
print(json.dumps({"counts": counts, "seconds": statistics.median(runs), "runs": runs,
                  "peak_rss_mb": peak, "max_bytes": partner.max_bytes,
                  "max_events": partner.max_events}))
"""
)

CHILD_BARE = (
    SETUP
    + """
import requests, statistics
limit, repeat = int(sys.argv[8]), int(sys.argv[9])
dry = Delivery(lake, hour, partner, Selection(), dry_run=True)
bodies = []
for batch in dry._batches(dry._chunks()):
    request = partner.request(partner.body(batch.encoded(), "bench"), "bench", batch.route)
    bodies.append((request.url, request.headers, request.body))
    if len(bodies) == limit:
        break
session = requests.Session()
runs = []
for _ in range(repeat):
    started = time.perf_counter()
    for target, headers, body in bodies:
        session.post(target, data=body, headers=headers, timeout=30).raise_for_status()
    runs.append(time.perf_counter() - started)
seconds = statistics.median(runs)
parsed = [json.loads(body) for _, _, body in bodies]  # mParticle: a JSON array of batches
units = sum(len(b) if isinstance(b, list) else 1 for b in parsed) / max(len(parsed), 1)
print(json.dumps({"seconds": seconds, "runs": runs, "bytes": sum(len(b) for _, _, b in bodies),
                  "requests": len(bodies), "units_per_request": units}))
"""
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--destinations", default="", help="comma-separated; default: all")
    parser.add_argument("--anchor-requests", type=int, default=400)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of ours and of the anchor; medians printed"
    )
    parser.add_argument("--work", type=Path, default=Path(".benchmarks"), help="generated hours")
    args = parser.parse_args()
    from currents_relay.destinations import enabled_destinations
    from currents_relay.sandbox import Sandbox

    args.work.mkdir(parents=True, exist_ok=True)
    lake = lake_of(args.work, args.events)
    wanted = {name for name in args.destinations.split(",") if name}
    repeat = str(args.repeat)
    lines = [
        "| push to | events sent | requests | MB | seconds (runs) | events/s | MB/s | req/s "
        "| peak RSS MB (first run) | bare session MB/s (runs) | ratio | batch fill "
        "| vs documented rate limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    # Sink mode: each server reads the body and answers as its partner would, without parsing
    # it, so the server's own speed never hides the client's (bodies are checked in the tests).
    with Sandbox(check_bodies=False) as sandbox:
        for destination in enabled_destinations():
            name = destination.name
            if wanted and name not in wanted:
                continue
            sim = sandbox.sims[destination.partner]
            url = sandbox.urls()[destination.partner]
            common = (str(lake), HOUR, name, url, sim.secret, LOGIN.get(name, ""))
            extra = json.dumps(EXTRA.get(name, {}))
            shutil.rmtree(lake / "deliveries", ignore_errors=True)  # nothing acknowledged yet
            sim.reset()
            bare = run_child(CHILD_BARE, *common, extra, str(args.anchor_requests), repeat)
            sim.reset()
            ours = run_child(CHILD_OURS, *common, extra, repeat)
            sim.reset()
            counts, seconds = ours["counts"], ours["seconds"]
            mb = counts["bytes_sent"] / 1e6
            requests_made = max(counts["requests"], 1)
            fill = max(
                counts["bytes_sent"] / requests_made / ours["max_bytes"],
                counts["delivered"] / requests_made / ours["max_events"],
            )
            bare_mb_s = bare["bytes"] / 1e6 / bare["seconds"]
            bare_range = sorted(bare["bytes"] / 1e6 / run for run in bare["runs"])
            versus = "none documented"
            if name in RATE_LIMITS:
                limit, unit = RATE_LIMITS[name]
                per_request = bare["units_per_request"] if unit == "batches" else 1
                rate = requests_made / seconds * per_request
                versus = f"{rate:,.0f} {unit}/s: {rate / limit:.1f}x of {limit}"
            lines.append(
                f"| {name} | {counts['delivered']:,} | {counts['requests']:,} | {mb:,.0f} | "
                f"{seconds:.2f} ({min(ours['runs']):.2f}-{max(ours['runs']):.2f}) | "
                f"{counts['delivered'] / seconds:,.0f} | {mb / seconds:,.1f} | "
                f"{requests_made / seconds:,.0f} | {ours['peak_rss_mb']:,.0f} | "
                f"{bare_mb_s:,.1f} ({bare_range[0]:,.0f}-{bare_range[-1]:,.0f}) | "
                f"{mb / seconds / bare_mb_s:.2f} | {fill:.0%} | {versus} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
