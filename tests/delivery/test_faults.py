"""Faults: flaky partners, a killed push, late files. Nothing is lost, nothing acknowledged is resent."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import orjson
import pytest

from currents_relay.delivery.engine import Delivery, DeliveryIncomplete, RetryPolicy, Selection
from currents_relay.delivery.ledger import Ledger
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import destinations
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.lake import Lake
from currents_relay.partners.custom_http import CustomHttp
from currents_relay.tools.sandbox import Faults, Sandbox
from tests.conftest import HOUR
from tests.delivery.conftest import PARTNERS, endpoint

FAST = RetryPolicy(budget_seconds=120, base_delay=0.005, max_delay=0.02)


def delivery(lake, sandbox, name) -> Delivery:
    partner = build_partner(destinations()[name], endpoint(sandbox, name))
    return Delivery(str(lake), HOUR, partner, Selection(), FAST)


@pytest.mark.parametrize("name", PARTNERS)
def test_thirty_percent_failures_lose_nothing_and_resend_nothing(lake, sandbox, name):
    sim = sandbox.sims[name]
    sim.faults = Faults(  # the first two requests fail for sure, then three in ten at random
        rate=0.3,
        next=2,
        statuses=[500, 502, 503],  # random 429s would be a throttle: see test_pacing
        modes=["status", "status", "reset"],
        retry_after=0,
    )
    counts = delivery(lake, sandbox, name).run()
    stats = sim.stats()
    assert counts["retries"] > 0
    assert counts["delivered"] == counts["selected"] == stats["unique_events"]
    assert (
        stats["duplicates"] == 0
    )  # faults happen before acceptance: no acknowledged batch was resent


def test_read_timeouts_are_retried_and_counted(lake, sandbox):
    sim = sandbox.sims["custom_http"]
    sim.faults = Faults(next=2, modes=["slow"], delay=3.0)  # two answers come too late
    partner = build_partner(destinations()["custom_http"], endpoint(sandbox, "custom_http"))
    # A read timeout well above a loaded machine's answer times, well below the slow answers.
    policy = RetryPolicy(budget_seconds=60, base_delay=0.005, max_delay=0.02, read_timeout=1.5)
    push = Delivery(str(lake), HOUR, partner, Selection(), policy)
    counts = push.run()
    assert counts["statuses"].get("ReadTimeout") == 2 and counts["retries"] == 2
    assert counts["delivered"] == counts["selected"] == sim.stats()["unique_events"]


def test_an_unreachable_partner_leaves_everything_pending_when_the_budget_ends(lake):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    partner = CustomHttp(Endpoint(f"http://127.0.0.1:{port}", password="sandbox-secret"))
    policy = RetryPolicy(budget_seconds=0.5, base_delay=0.01, max_delay=0.05)
    push = Delivery(str(lake), HOUR, partner, Selection(), policy)
    with pytest.raises(DeliveryIncomplete, match="retry budget"):
        push.run()
    counts = push.counts()
    assert counts["retries"] >= 2 and set(counts["statuses"]) == {"ConnectError"}
    assert counts["delivered"] == 0 and counts["pending"] == counts["selected"] > 0


def acknowledged(lake, destination: str) -> int:
    ledger = Ledger(Lake(str(lake)), destination, HOUR)
    return sum(len(keys) for keys in ledger.acknowledged.values())


KILLED_PUSH = """
import sys
from currents_relay.delivery.engine import Delivery, DeliveryIncomplete, RetryPolicy, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.ledger import Ledger
from currents_relay.delivery.partner import Endpoint
from currents_relay.partners.custom_http import CustomHttp
partner = CustomHttp(Endpoint(sys.argv[2], password=sys.argv[3]), {"max_in_flight": 8})
Delivery(sys.argv[1], sys.argv[4], partner, Selection(), RetryPolicy()).run()
"""


def test_sigkill_mid_push_then_rerun_loses_nothing(lake, sandbox):
    sim = sandbox.sims["custom_http"]
    sim.set_network(0.1, None)  # a partner 100 ms away: the push takes seconds
    args = [str(lake), sandbox.urls()["custom_http"], sim.secret, HOUR]
    child = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, *args], env=os.environ.copy())
    in_flight = 8
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and acknowledged(lake, "custom_http") < 500:
        time.sleep(0.05)
    assert sim.stats()["max_in_flight"] == in_flight
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    acknowledged_before = acknowledged(lake, "custom_http")  # the killed run's journal
    assert 500 <= acknowledged_before <= sim.stats()["accepted_events"]
    killed_mid_push = acknowledged_before
    sim.set_network(0.0, None)
    counts = delivery(lake, sandbox, "custom_http").run()
    stats = sim.stats()
    assert (
        counts["delivered"] == counts["selected"] == stats["unique_events"]
        and counts["pending"] == 0
    )
    assert killed_mid_push < counts["selected"]
    # At most the batches in flight when the push died (100 events each) came twice.
    assert stats["duplicates"] <= in_flight * 100


def test_late_file_rerun_sends_only_the_new_events(generated_hour, sandbox, tmp_path):
    source, _ = generated_hour
    landing = tmp_path / "landing"
    shutil.copytree(source, landing)
    lake = tmp_path / "lake"
    process_hour(str(landing), str(lake), parse_hour(HOUR))
    first = delivery(lake, sandbox, "zeotap").run()
    late = [
        {
            "event_type": "users.messages.email.Open",
            "id": f"late-{i}",
            "time": 1793527200 + i,
            "user": {"user_id": "u", "external_user_id": f"x{i}"},
            "properties": {"email_address": "a@b.co"},
        }
        for i in range(3)
    ]
    (landing / "http" / "date=2026-11-01-10" / "late.json").write_text(json.dumps({"events": late}))
    process_hour(str(landing), str(lake), parse_hour(HOUR))
    before = sandbox.sims["zeotap"].stats()["accepted_events"]
    second = delivery(lake, sandbox, "zeotap").run()
    stats = sandbox.sims["zeotap"].stats()
    assert stats["accepted_events"] - before == 3 and stats["duplicates"] == 0
    assert second["delivered"] == first["delivered"] + 3 and second["requests"] == 1


def test_the_benchmarks_sink_reads_every_body_whole_and_answers_as_the_partner():
    """Sink mode (`check_bodies=False`): bodies are read whole, unparsed, so a keep-alive
    connection stays in step, request after request, large or gzipped."""
    with Sandbox(names=["treasure_data"], check_bodies=False) as sandbox:
        port = int(sandbox.urls()["treasure_data"].rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        bodies = [b"x" * 3_500_000, b"", b"not even json", gzip.compress(b"[]")]
        for body in bodies:
            headers = {"Content-Encoding": "gzip"} if body[:2] == b"\x1f\x8b" else {}
            connection.request("POST", "/postback/v3/event/a/b", body=body, headers=headers)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"{}")
        connection.close()
        assert sandbox.sims["treasure_data"].requests == len(bodies)


def test_the_sandbox_reads_requests_as_an_http_server_does():
    """Headers in any case, `Expect: 100-continue` answered as curl expects, HTTP/1.0 closes,
    a garbled request line is a 400."""
    with Sandbox(names=["treasure_data"]) as sandbox:
        port = int(sandbox.urls()["treasure_data"].rsplit(":", 1)[1])
        secret = sandbox.sims["treasure_data"].secret
        with socket.create_connection(("127.0.0.1", port)) as client:
            reader = client.makefile("rb")
            head = (
                "POST /postback/v3/event/a/b HTTP/1.1\r\nHost: x\r\n"
                f"x-td-write-key: {secret}\r\nContent-Length: 2\r\nEXPECT: 100-continue\r\n\r\n"
            )
            client.sendall(head.encode())
            assert reader.readline().startswith(b"HTTP/1.1 100")
            assert reader.readline() == b"\r\n"
            client.sendall(b"{}")
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 ") and b" 401 " not in status  # key found
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GARBAGE\r\n\r\n")
            assert b"400" in client.makefile("rb").read()  # then closed
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /__sandbox/stats HTTP/1.0\r\n\r\n")
            answer = client.makefile("rb").read()  # to the close: HTTP/1.0 is not kept
            assert answer.startswith(b"HTTP/1.") and b'"requests": 1' in answer


@pytest.mark.parametrize("name", PARTNERS)
def test_every_sandbox_server_accepts_plain_requests_chunked_and_gzipped(sandbox, name):
    """What any HTTP client sends (requests' chunked bodies from a generator, gzip) is read
    as a real server reads it."""
    import requests

    from currents_relay.delivery.push import build_partner

    partner = build_partner(destinations()[name], endpoint(sandbox, name))
    event = {
        "event_type": "users.messages.email.Open",
        "id": f"plain-{name}",
        "time": 1793527200,
        "user": {"user_id": "u", "external_user_id": "x"},
        "properties": {"email_address": "a@b.co"},
    }
    from currents_relay.ingest.normalize import to_canonical

    row, reasons = to_canonical(event)
    assert not reasons
    wire = orjson.dumps(partner.wire_event(row))
    body = partner.body([wire], "plain")
    request = partner.request(body, "plain")
    chunked = requests.post(request.url, data=iter([body[:10], body[10:]]), headers=request.headers)
    assert 200 <= chunked.status_code < 300, chunked.text
    squeezed = requests.post(
        request.url,
        data=gzip.compress(body),
        headers=request.headers | {"Content-Encoding": "gzip"},
    )
    assert 200 <= squeezed.status_code < 300, squeezed.text
    stats = sandbox.sims[name].stats()
    assert stats["unique_events"] == 1 and stats["accepted_events"] == 2
    assert stats["gzip_requests"] == 1
