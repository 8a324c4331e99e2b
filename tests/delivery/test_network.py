"""The push on a real network: requests in flight, a partner's throttle, proxies, TLS trust,
redirects, names that do not resolve. Real servers on loopback, started by each test."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from currents_relay.delivery.engine import (
    Delivery,
    DeliveryIncomplete,
    DeliveryStopped,
    RetryPolicy,
    Selection,
)
from currents_relay.delivery.ledger import Ledger, ledger_batches
from currents_relay.delivery.partner import Concurrency, Endpoint
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import destinations
from currents_relay.lake import Lake
from currents_relay.partners.custom_http import CustomHttp
from currents_relay.partners.mparticle import MParticle
from currents_relay.partners.segment import Segment
from currents_relay.tools.sandbox import Faults, Sandbox
from tests.conftest import HOUR
from tests.delivery.conftest import endpoint
from tests.delivery.test_tls import self_signed


def push(lake, sandbox, name, policy: RetryPolicy | None = None, **options):
    partner = build_partner(destinations()[name], endpoint(sandbox, name))
    partner.options.update(options)
    return Delivery(str(lake), HOUR, partner, Selection(), policy or RetryPolicy())


def acknowledged_ids(lake, name) -> set[str]:
    """The ids the ledger of `name` holds for the hour."""
    ledger = Ledger(Lake(str(lake)), name, HOUR)
    fs, ids = ledger.lake.fs, set()
    for path in fs.glob(f"{ledger.ack_dir}/ack-*"):
        for batch in ledger_batches(fs, path, ["id"]):
            ids.update(batch.column(0).to_pylist())
    return ids


def test_requests_overlap_up_to_max_in_flight_and_every_event_arrives_once(lake, tmp_path):
    record = tmp_path / "accepted.jsonl"
    with Sandbox(names=["zeotap"], latency=0.1, record=record) as sandbox:
        started = time.monotonic()
        counts = push(lake, sandbox, "zeotap", max_in_flight=8).run()
        seconds = time.monotonic() - started
        stats = sandbox.sims["zeotap"].stats()
    assert stats["max_in_flight"] == 8 == counts["max_in_flight"]
    assert counts["delivered"] == counts["selected"] == stats["unique_events"] > 0
    assert stats["duplicates"] == 0
    # One at a time, each request would take its 100 ms: several in flight take far less.
    assert seconds < counts["requests"] * 0.1 / 3
    arrived = {json.loads(line)["event_id"] for line in record.read_text().splitlines()}
    assert acknowledged_ids(lake, "zeotap") == arrived


def test_a_partners_throttle_slows_the_push_under_its_rate_and_nothing_is_lost(lake):
    limit = 10
    with Sandbox(names=["custom_http"], latency=0.02, rate_limit=limit) as sandbox:
        sim = sandbox.sims["custom_http"]
        starts: list[float] = []
        real_admit = sim.rate_limit.admit

        def admit(now):
            starts.append(now)
            return real_admit(now)

        sim.rate_limit.admit = admit
        counts = push(lake, sandbox, "custom_http", max_in_flight=8).run()
        stats = sim.stats()
    assert counts["delivered"] == counts["selected"] == stats["unique_events"] > 0
    assert counts["throttled"] >= 1 and stats["statuses"].get("429", 0) > 0
    # After the first throttles, the push stays at or under the partner's rate: the requests
    # of every second after the last 429 stay within it (the server answered no more 429s).
    last_429 = counts["statuses"]["429"]
    assert last_429 < 4 * 8  # it slowed down rather than hammering the throttle
    per_second = Counter(int(t - starts[0]) for t in starts[len(starts) // 2 :])
    assert max(per_second.values()) <= limit + 1


def test_a_push_longer_than_the_budget_with_a_503_near_its_end_completes(lake):
    with Sandbox(names=["zeotap"], latency=0.05) as sandbox:
        sim = sandbox.sims["zeotap"]
        policy = RetryPolicy(budget_seconds=1.0, base_delay=0.05, max_delay=0.2)
        delivery = push(lake, sandbox, "zeotap", policy, max_in_flight=2)

        def fail_late():
            time.sleep(1.5)  # past the budget, measured from the push's start
            sim.faults = Faults(next=2, statuses=[503])

        threading.Thread(target=fail_late, daemon=True).start()
        started = time.monotonic()
        counts = delivery.run()
    assert time.monotonic() - started > 1.5
    assert counts["statuses"].get("503") == 2 and counts["retries"] == 2
    assert counts["delivered"] == counts["selected"] == sim.stats()["unique_events"]


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy for http:// URLs: records each request line, then relays it."""

    seen: list[str]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.seen.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        with requests.Session() as direct:
            direct.trust_env = False  # never through itself
            answer = direct.post(self.path, data=body, headers=headers, timeout=30)
        self.send_response(answer.status_code)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


@pytest.fixture()
def proxy():
    seen: list[str] = []
    handler = type("Proxy", (_Proxy,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("how", ["environment", "extra", "no_proxy"])
def test_a_forward_proxy_sees_every_request_unless_no_proxy_names_the_host(
    lake, sandbox, proxy, monkeypatch, how
):
    url, seen = proxy
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    extra = {}
    if how == "extra":
        extra = {"proxies": {"http": url}}
    else:
        monkeypatch.setenv("HTTP_PROXY", url)
    if how == "no_proxy":
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    partner = build_partner(destinations()["zeotap"], endpoint(sandbox, "zeotap", **extra))
    counts = Delivery(str(lake), HOUR, partner, Selection()).run()
    assert counts["delivered"] == counts["selected"] > 0
    if how == "no_proxy":
        assert seen == []
    else:
        assert len(seen) == counts["requests"] and all(
            s.startswith("http://127.0.0.1") for s in seen
        )


@pytest.mark.parametrize("how", ["verify", "REQUESTS_CA_BUNDLE"])
def test_a_private_ca_is_trusted_from_the_connection_or_the_environment(
    lake, tmp_path, monkeypatch, how
):
    cert, key = self_signed(tmp_path)
    with Sandbox(names=["zeotap"], tls=(cert, key)) as sandbox:
        if how == "verify":
            connection = endpoint(sandbox, "zeotap", verify=str(cert))
        else:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
            connection = endpoint(sandbox, "zeotap")
        partner = build_partner(destinations()["zeotap"], connection)
        counts = Delivery(str(lake), HOUR, partner, Selection()).run()
    assert counts["delivered"] == counts["selected"] > 0


def test_a_certificate_for_another_host_is_refused(lake, tmp_path):
    cert, key = self_signed(tmp_path)  # for 127.0.0.1, reached as localhost
    with Sandbox(names=["zeotap"], tls=(cert, key)) as sandbox:
        connection = endpoint(sandbox, "zeotap", verify=str(cert))
        connection = Endpoint(
            connection.url.replace("127.0.0.1", "localhost"),
            password=connection.password,
            extra=connection.extra,
        )
        delivery = Delivery(
            str(lake), HOUR, build_partner(destinations()["zeotap"], connection), Selection()
        )
        with pytest.raises(DeliveryStopped, match="not trusted"):
            delivery.run()
        assert sandbox.sims["zeotap"].stats()["requests"] == 0
    assert delivery.counts()["delivered"] == 0


class _Moved(BaseHTTPRequestHandler):
    status = 301

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Location", "https://elsewhere.example/v2/events")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_stops_the_destination_naming_the_location(lake, status):
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("M", (_Moved,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        partner = CustomHttp(
            Endpoint(f"http://127.0.0.1:{server.server_address[1]}", password="token-5f2a9c")
        )
        delivery = Delivery(str(lake), HOUR, partner, Selection())
        with pytest.raises(DeliveryStopped, match=rf"HTTP {status} redirect to https://elsewhere"):
            delivery.run()
    finally:
        server.shutdown()
        server.server_close()
    counts = delivery.counts()
    assert counts["requests"] == 1 and counts["delivered"] == 0
    assert counts["pending"] == counts["selected"] > 0


def test_a_host_that_does_not_resolve_stops_after_brief_retries(lake, caplog):
    """...and credentials in its URL (`user:password@`) appear in no log line or error."""
    import logging

    caplog.set_level(logging.DEBUG)
    url = "http://relay:url-pass-8c1e77@no-such-host.invalid/events?api_key=url-key-3f9d21"
    partner = CustomHttp(Endpoint(url, password="token-5f2a9c"))
    policy = RetryPolicy(base_delay=0.05, max_delay=0.1, dns_seconds=0.5)
    delivery = Delivery(str(lake), HOUR, partner, Selection(), policy)
    with pytest.raises(DeliveryStopped, match="does not resolve") as stopped:
        delivery.run()
    counts = delivery.counts()
    assert counts["statuses"]["NameResolutionError"] >= 2 and counts["delivered"] == 0
    assert "no-such-host.invalid" in caplog.text  # the requests were logged, redacted
    for secret in ("url-pass-8c1e77", "url-key-3f9d21", "token-5f2a9c"):
        assert secret not in caplog.text and secret not in str(stopped.value)


def test_each_push_task_takes_its_pools_share_of_the_partners_rate(monkeypatch):
    """The documented limit holds for all push tasks of a destination together: each takes
    the rate divided by its pool's slots, which `airflow_settings.yaml` sets as configured."""
    import yaml

    monkeypatch.undo()  # the documented rates, which the other tests lift
    from tests.conftest import ROOT

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    slots = {p["pool_name"]: p["pool_slot"] for p in settings["pools"]}
    for destination in destinations().values():
        assert slots[destination.pool] == int(destination.options.get("pool_slots", 1))
    segment = Segment(Endpoint("https://x", password="wk"), {"pool_slots": 2})
    assert segment.concurrency().requests_per_second == 25.0
    mparticle = MParticle(Endpoint("https://x", login="k", password="s"))
    assert mparticle.concurrency().units_per_second == 270.0
    narrowed = CustomHttp(Endpoint("https://x"), {"max_in_flight": 3, "requests_per_second": 9})
    assert narrowed.concurrency() == Concurrency(3, 9.0, None)


def test_a_retry_after_beyond_the_budget_leaves_the_batch_pending_saying_so(lake):
    with Sandbox(names=["zeotap"]) as sandbox:
        sandbox.sims["zeotap"].faults = Faults(next=1, statuses=[503], retry_after=600)
        delivery = push(lake, sandbox, "zeotap", RetryPolicy(budget_seconds=5))
        started = time.monotonic()
        with pytest.raises(DeliveryIncomplete, match="asked to wait 600 s"):
            delivery.run()
    assert time.monotonic() - started < 5  # it did not sit out the wait
    counts = delivery.counts()
    assert counts["delivered"] == 0 and counts["pending"] == counts["selected"] > 0


def test_the_systems_trust_store_is_used_where_the_connection_asks(lake, tmp_path):
    """`trust_store: "system"` verifies against the operating system's authorities (which
    do not know the test's private CA), on this connection's sessions only."""
    import ssl

    cert, key = self_signed(tmp_path)
    with Sandbox(names=["zeotap"], tls=(cert, key)) as sandbox:
        connection = endpoint(sandbox, "zeotap", trust_store="system")
        delivery = Delivery(
            str(lake), HOUR, build_partner(destinations()["zeotap"], connection), Selection()
        )
        with pytest.raises(DeliveryStopped, match="not trusted"):
            delivery.run()
    assert not isinstance(ssl.create_default_context(), __import__("truststore").SSLContext)


def test_a_ca_bundle_that_is_not_there_is_a_configuration_error_naming_the_extra(lake, tmp_path):
    from currents_relay.delivery.partner import ConfigurationError

    connection = Endpoint("https://x.invalid", password="token-5f2a9c", extra={"verify": "/nope"})
    with pytest.raises(ConfigurationError, match=r"extra\.verify: no CA bundle at /nope"):
        Delivery(str(lake), HOUR, CustomHttp(connection), Selection())


def test_a_connection_extra_sets_the_accounts_own_limits():
    raised = Endpoint("https://x", login="k", password="s", extra={"units_per_second": 1000})
    assert MParticle(raised, {"pool_slots": 2}).concurrency().units_per_second == 500.0
    narrowed = CustomHttp(Endpoint("https://x", extra={"max_in_flight": 2}), {"max_in_flight": 9})
    assert narrowed.concurrency().max_in_flight == 2
