"""Push benchmark: one ingested hour delivered to each destination on a realistic network.

    python benchmarks/push.py [--events 1000000] [--destinations treasure_data,segment]
                              [--latency 0.1] [--mparticle-events 50000]

The sandbox servers run in this process, each answering every request 100 ms late (a
round trip plus the partner's work), in sink mode (bodies read whole, not parsed: the
tests check them); each push runs in a child process, as an Airflow task would, with the
destination's default concurrency and the partner's documented rate limit.

Per destination: wall time, events/s, the most requests the server saw in flight, and the
job's floor beside it: the time the partner's documented rate limit allows for the
requests (Segment: 50 requests/s) or units (mParticle: 270 event batches/s, counted in the
bodies) sent, else none. Target: within max(3 minutes, 1.1x the floor), never above the
documented rate. CPU-seconds per million events (the child's user + system time: reading
the lake, encoding, sending, the ledger) and its peak RSS. mParticle runs a smaller hour
(`--mparticle-events`): at its documented 270 batches/s a 1M-event hour of one-event users
takes an hour by itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import HOUR, lake_of, run_child

EXTRA = {"treasure_data": {"database": "bench", "table": "events"}}
LOGIN = {"mparticle": "sandbox-mparticle-key"}

CHILD = """
import json, sys, time
from currents_relay.delivery.engine import Delivery, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import enabled_destinations
lake, hour, name, url, secret, login, extra = sys.argv[1:8]
destination = next(d for d in enabled_destinations() if d.name == name)
endpoint = Endpoint(url, login=login or None, password=secret, extra=json.loads(extra))
partner = build_partner(destination, endpoint)
started = time.perf_counter()
delivery = Delivery(lake, hour, partner, Selection())
counts = delivery.run()
seconds = time.perf_counter() - started
concurrency = partner.concurrency()
print(json.dumps({"counts": counts, "seconds": seconds, "peak_rss_mb": peak_mb(),
                  "requests_per_second": concurrency.requests_per_second,
                  "units_per_second": concurrency.units_per_second,
                  "max_in_flight": concurrency.max_in_flight}))
"""


def floor_seconds(result: dict, units: int) -> tuple[float, str]:
    """The time the partner's documented rate allows for what was sent, and the rate."""
    counts = result["counts"]
    if result["units_per_second"]:
        rate = result["units_per_second"]
        return units / rate, f"{rate:,.0f} batches/s"
    if result["requests_per_second"]:
        rate = result["requests_per_second"]
        return counts["requests"] / rate, f"{rate:,.0f} requests/s"
    return 0.0, "none documented"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--mparticle-events", type=int, default=50_000)
    parser.add_argument("--destinations", default="", help="comma-separated; default: all")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per answer")
    parser.add_argument("--work", type=Path, default=Path(".benchmarks"), help="generated hours")
    args = parser.parse_args()
    from currents_relay.destinations import enabled_destinations
    from currents_relay.tools.sandbox import Sandbox

    args.work.mkdir(parents=True, exist_ok=True)
    wanted = {name for name in args.destinations.split(",") if name}
    lines = [
        f"Sandbox answering {args.latency * 1000:.0f} ms late (sink mode); one push per row.",
        "",
        "| push to | events sent | requests | seconds | events/s | peak in flight "
        "| documented rate | floor s | target s | CPU s per 1M events | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    with Sandbox(check_bodies=False, latency=args.latency) as sandbox:
        for destination in enabled_destinations():
            name = destination.name
            if wanted and name not in wanted:
                continue
            events = args.mparticle_events if destination.partner == "mparticle" else args.events
            lake = lake_of(args.work, events)
            sim = sandbox.sims[destination.partner]
            url = sandbox.urls()[destination.partner]
            shutil.rmtree(lake / "deliveries", ignore_errors=True)  # nothing acknowledged yet
            sim.reset()
            sim.set_network(args.latency, None)
            units = _counting_units(sim) if destination.partner == "mparticle" else None
            extra = json.dumps(EXTRA.get(name, {}))
            result = run_child(
                CHILD, str(lake), HOUR, name, url, sim.secret, LOGIN.get(name, ""), extra
            )
            counts, seconds = result["counts"], result["seconds"]
            floor, rate = floor_seconds(result, units[0] if units else 0)
            target = max(180.0, 1.1 * floor)
            per_million = result["cpu"] / max(counts["delivered"], 1) * 1e6
            lines.append(
                f"| {name} | {counts['delivered']:,} | {counts['requests']:,} | {seconds:.1f} | "
                f"{counts['delivered'] / seconds:,.0f} | {sim.stats()['max_in_flight']} | "
                f"{rate} | {floor:.0f} | {target:.0f} | {per_million:.1f} | "
                f"{result['peak_rss_mb']:,.0f} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))


def _counting_units(sim) -> list[int]:
    """Parses every body the server reads and counts its event batches (mParticle's rate
    unit, one per user)."""
    units = [0]
    real_check = sim.check

    def check(method, path, query, headers, body):
        units[0] += len(json.loads(body))
        return real_check(method, path, query, headers, body)

    sim.check, sim.check_bodies = check, True
    return units


if __name__ == "__main__":
    main()
