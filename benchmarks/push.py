"""Push benchmark: one ingested hour delivered to every destination's sandbox server.

    python benchmarks/push.py [--events 1000000]

Per destination: events/s, MB/s and requests/s of `Delivery.run` (selection, encoding,
batching at the partner's limits, sending, ledger appends) against the loopback sandbox,
beside a bare `requests.Session` posting the very same bodies to the same server in the same
run; how full batches are against the partner's binding limit; and requests/s against the
partner's documented rate limit (Segment ~1,000 req/s per workspace, mParticle ~270
batches/s) where there is one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests

HOUR = "2026-11-01T10"
EXTRA = {"treasure_data": {"database": "bench", "table": "events"}}
LOGIN = {"mparticle": "sandbox-mparticle-key"}
RATE_LIMITS = {"segment": 1_000, "mparticle": 270}  # documented requests (batches) per second


def bare_session(url: str, bodies: list[tuple[str, dict, bytes]]) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for target, headers, body in bodies:
        session.post(url + target, data=body, headers=headers, timeout=30).raise_for_status()
    return time.perf_counter() - started


def same_bodies(lake: Path, partner, base_url: str) -> list[tuple[str, dict, bytes]]:
    """The requests the run sent, rebuilt without sending (the anchor posts these)."""
    from currents_relay.delivery.engine import Delivery, Selection

    dry = Delivery(str(lake), HOUR, partner, Selection(), dry_run=True)
    dry.ledger.acknowledged.clear()  # rebuild every body, acknowledged or not
    bodies = []
    for event_type, files in dry._event_types():
        for batch in dry._batches(dry._select(event_type, files)):
            request = partner.request(
                partner.body([e.encoded for e in batch], "bench"), "bench", batch[0].route
            )
            bodies.append((request.url[len(base_url) :], request.headers, request.body))
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    from currents_relay.delivery.engine import Delivery, Selection
    from currents_relay.delivery.partner import Endpoint
    from currents_relay.delivery.push import build_partner
    from currents_relay.destinations import enabled_destinations
    from currents_relay.generator import generate_hour
    from currents_relay.hours import parse_hour
    from currents_relay.ingest import process_hour
    from currents_relay.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="currents-push-bench-") as tmp:
        root = Path(tmp)
        generate_hour(
            str(root / "landing"),
            parse_hour(HOUR),
            events=args.events,
            faults=False,
            file_events=15_000,
        )
        report = process_hour(str(root / "landing"), str(root / "lake"), parse_hour(HOUR))
        print(f"hour of {report['events']['written']:,} events ingested\n")
        print(
            "| destination | events sent | requests | MB | seconds | events/s | MB/s | req/s | bare session MB/s "
            "| ratio | batch fill | req/s vs documented limit |"
        )
        print(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        with Sandbox() as sandbox:
            for destination in enabled_destinations():
                name = destination.name
                sim = sandbox.sims[destination.partner]
                url = sandbox.urls()[destination.partner]
                endpoint = Endpoint(
                    url, login=LOGIN.get(name), password=sim.secret, extra=EXTRA.get(name, {})
                )
                partner = build_partner(destination, endpoint)
                started = time.perf_counter()
                counts = Delivery(str(root / "lake"), HOUR, partner, Selection()).run()
                seconds = time.perf_counter() - started
                bodies = same_bodies(root / "lake", partner, url)
                sim.reset()
                bare = bare_session(url, bodies)
                mb = counts["bytes_sent"] / 1e6
                requests_made = max(counts["requests"], 1)
                fill = max(
                    counts["bytes_sent"] / requests_made / partner.max_bytes,
                    counts["delivered"] / requests_made / partner.max_events,
                )
                limit = RATE_LIMITS.get(name)
                versus = f"{requests_made / seconds / limit:.1f}x" if limit else "none documented"
                print(
                    f"| {name} | {counts['delivered']:,} | {counts['requests']:,} | {mb:,.0f} | {seconds:.1f} | "
                    f"{counts['delivered'] / seconds:,.0f} | {mb / seconds:,.1f} | {requests_made / seconds:,.0f} | "
                    f"{mb / bare:,.1f} | {bare / seconds:.2f} | {fill:.0%} | {versus} |"
                )


if __name__ == "__main__":
    main()
