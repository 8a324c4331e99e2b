"""Push benchmark: one ingested hour delivered to every destination's sandbox server.

    python benchmarks/push.py [--events 1000000]

For each destination: events/s and MB/s of `Delivery.run` (selection, encoding, batching at
the partner's limits, sending, ledger appends) against the loopback sandbox, beside a bare
`requests.Session` posting the very same bodies to the same server in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests

HOUR = "2026-11-01T10"
EXTRA = {"treasure_data": {"database": "bench", "table": "events"}}


def bare_session(url: str, bodies: list[tuple[str, dict, bytes]]) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for target, headers, body in bodies:
        session.post(url + target, data=body, headers=headers, timeout=30).raise_for_status()
    return time.perf_counter() - started


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
            "| destination | events sent | requests | MB sent | seconds | events/s | MB/s | bare session MB/s | ratio | fill |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        with Sandbox() as sandbox:
            for destination in enabled_destinations():
                name = destination.name
                sim = sandbox.sims[destination.partner]
                endpoint = Endpoint(
                    sandbox.urls()[destination.partner],
                    password=sim.secret,
                    extra=EXTRA.get(name, {}),
                )
                partner = build_partner(destination, endpoint)
                started = time.perf_counter()
                counts = Delivery(str(root / "lake"), HOUR, partner, Selection()).run()
                seconds = time.perf_counter() - started
                # The anchor: the same bodies, rebuilt, posted by a bare session.
                dry = Delivery(
                    str(root / "lake-copy-unused"), HOUR, partner, Selection(), dry_run=True
                )
                dry.lake = Delivery(str(root / "lake"), HOUR, partner, Selection()).lake
                bodies = []
                for event_type, files in dry._event_types():
                    for batch in dry._batches(_all_events(dry, event_type, files)):
                        request = partner.request(partner.body([e.encoded for e in batch]), "bench")
                        bodies.append(
                            (request.url[len(endpoint.url) :], request.headers, request.body)
                        )
                sim.reset()
                bare = bare_session(endpoint.url, bodies)
                mb = counts["bytes_sent"] / 1e6
                fill = max(
                    counts["bytes_sent"] / counts["requests"] / partner.max_bytes,
                    counts["delivered"] / counts["requests"] / partner.max_events,
                )
                print(
                    f"| {name} | {counts['delivered']:,} | {counts['requests']:,} | {mb:,.0f} | {seconds:.1f} | "
                    f"{counts['delivered'] / seconds:,.0f} | {mb / seconds:,.0f} | {mb / bare:,.0f} | "
                    f"{bare / seconds:.2f} | {fill:.0%} |"
                )


def _all_events(delivery, event_type, files):
    delivery.ledger.acknowledged.clear()  # rebuild every body, acknowledged or not
    return delivery._pending_events(event_type, files)


if __name__ == "__main__":
    main()
