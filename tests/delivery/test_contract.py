"""The contract every destination meets, parametrised over the partner registry."""

from __future__ import annotations

import json
import logging
import time

import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import Delivery, DeliveryStopped, RetryPolicy, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import destinations
from tests.conftest import HOUR
from tests.delivery.conftest import HTTP_SHAPE, PARTNERS, endpoint

FAST = RetryPolicy(budget_seconds=60, base_delay=0.01, max_delay=0.05)


def deliver(lake, sandbox, name, *, secret=None, selection=None, **kwargs) -> Delivery:
    partner = build_partner(destinations()[name], endpoint(sandbox, name, secret))
    return Delivery(
        str(lake), HOUR, partner, selection or Selection(), kwargs.pop("policy", FAST), **kwargs
    )


def reconciles(counts: dict) -> bool:
    return (
        counts["considered"] == counts["selected"] + sum(counts["skipped"].values())
        and counts["selected"] == counts["delivered"] + counts["dead_lettered"] + counts["pending"]
    )


@pytest.mark.parametrize("name", PARTNERS)
def test_every_selected_event_arrives_once_within_limits(lake, sandbox, name):
    counts = deliver(lake, sandbox, name).run()
    stats = sandbox.sims[name].stats()
    assert reconciles(counts)
    assert (
        counts["skipped"].get("anonymous", 0) > 0
    )  # Braze's rule: no external_user_id, no delivery
    assert (
        counts["delivered"]
        == counts["selected"]
        == stats["unique_events"]
        == stats["accepted_events"]
    )
    assert counts["pending"] == counts["dead_lettered"] == 0 and stats["duplicates"] == 0
    partner = build_partner(destinations()[name], endpoint(sandbox, name))
    assert stats["max_body_bytes"] <= partner.max_bytes
    assert stats["max_request_events"] <= partner.max_events


@pytest.mark.parametrize("name", HTTP_SHAPE)
def test_payload_is_brazes_http_event_shape(lake, sandbox, name, tmp_path):
    deliver(lake, sandbox, name).run()
    accepted = [json.loads(line) for line in (tmp_path / "accepted.jsonl").read_text().splitlines()]
    assert {a["destination"] for a in accepted} == {name}
    table = pq.read_table(lake / "events" / "event_type=users.behaviors.Purchase").to_pylist()
    sent = {a["event_id"] for a in accepted}
    assert {r["id"] for r in table if r["external_user_id"]} <= sent


@pytest.mark.parametrize("name", PARTNERS)
def test_rerun_sends_nothing_already_acknowledged(lake, sandbox, name):
    first = deliver(lake, sandbox, name).run()
    second = deliver(lake, sandbox, name).run()
    assert second["requests"] == 0 and second["delivered"] == first["delivered"]
    assert sandbox.sims[name].stats()["duplicates"] == 0


@pytest.mark.parametrize("name", [n for n in PARTNERS if n != "treasure_data"])
def test_bad_credentials_stop_at_once_and_keep_everything_pending(lake, sandbox, name, caplog):
    secret = "wrong-secret-value-123"
    caplog.set_level(logging.DEBUG)
    delivery = deliver(lake, sandbox, name, secret=secret)
    with pytest.raises(DeliveryStopped, match=rf"{name}: HTTP 40[13]") as stopped:
        delivery.run()
    counts = delivery.counts()
    assert counts["requests"] == 1 and counts["retries"] == 0
    assert counts["pending"] == counts["selected"] > 0 and reconciles(counts)
    assert secret not in caplog.text and secret not in str(stopped.value)
    # Fixed credentials: a re-run delivers everything that was pending.
    fixed = deliver(lake, sandbox, name).run()
    assert fixed["delivered"] == fixed["selected"] and fixed["pending"] == 0


def test_treasure_data_answers_200_for_a_bad_key_and_the_report_says_so(lake, sandbox):
    counts = deliver(lake, sandbox, "treasure_data", secret="not-the-key").run()
    assert counts["delivered"] == counts["selected"]
    assert sandbox.sims["treasure_data"].stats()["discarded"] == counts["selected"]
    assert counts["acknowledgement"].startswith("asynchronous")


@pytest.mark.parametrize("name", PARTNERS)
@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_statuses_are_retried_honouring_retry_after(lake, sandbox, name, status):
    sandbox.sims[name].faults.__init__(next=3, statuses=[status], retry_after=0.25)
    started = time.monotonic()
    counts = deliver(lake, sandbox, name).run()
    assert counts["retries"] == 3 and counts["pending"] == 0, counts["statuses"]
    assert time.monotonic() - started >= 3 * 0.25  # the first batch waited each time
    assert sandbox.sims[name].stats()["unique_events"] == counts["delivered"]


@pytest.mark.parametrize("name", PARTNERS)
def test_413_splits_the_batch(lake, sandbox, name):
    sandbox.sims[name].faults.__init__(next=1, statuses=[413])
    counts = deliver(lake, sandbox, name).run()
    assert counts["splits"] >= 1 and counts["delivered"] == counts["selected"]
    assert sandbox.sims[name].stats()["duplicates"] == 0


@pytest.mark.parametrize("name", PARTNERS)
def test_a_poisoned_event_is_dead_lettered_alone(lake, sandbox, name):
    poisoned = pq.read_table(lake / "events" / "event_type=users.messages.email.Open").to_pylist()
    target = next(r for r in poisoned if r["external_user_id"])
    sandbox.sims[name].poison = {target["id"]}
    counts = deliver(lake, sandbox, name).run()
    assert (
        counts["dead_lettered"] == 1
        and counts["delivered"] == counts["selected"] - 1
        and reconciles(counts)
    )
    dead = pq.read_table(lake / "dead_letter" / name).to_pylist()
    assert [(d["id"], d["status"]) for d in dead] == [(target["id"], 400)]
    assert "rejected" in dead[0]["reason"] and target["id"] in dead[0]["payload"]  # the wire event
    # Dead letters are not re-sent by a re-run, only by a replay (which may deliver them).
    assert deliver(lake, sandbox, name).run()["requests"] == 0
    sandbox.sims[name].poison = set()
    replayed = deliver(lake, sandbox, name, replay=True).run()
    assert replayed["dead_lettered"] == 0 and replayed["delivered"] == replayed["selected"]


@pytest.mark.parametrize("name", PARTNERS)
def test_dry_run_builds_batches_and_sends_nothing(lake, sandbox, name):
    counts = deliver(lake, sandbox, name, dry_run=True).run()
    assert (
        counts["requests"] == 0
        and counts["batches"] > 0
        and counts["pending"] == counts["selected"]
    )
    assert sandbox.sims[name].stats()["requests"] == 0
    assert not (lake / "deliveries").exists()


def test_selection_globs_and_identity(lake, sandbox):
    email_only = Selection(
        include=("users.messages.email.*",), exclude=("users.messages.email.Bounce",)
    )
    counts = deliver(lake, sandbox, "custom_http", selection=email_only).run()
    assert counts["skipped"]["event_type"] > 0 and reconciles(counts)
    everyone = deliver(lake, sandbox, "zeotap", selection=Selection(identities=())).run()
    assert "anonymous" not in everyone["skipped"] and everyone["selected"] == everyone["considered"]


def test_a_key_in_the_url_never_reaches_the_logs(lake, sandbox, caplog):
    from dataclasses import replace

    caplog.set_level(logging.DEBUG)
    secret = "url-secret-key-456"
    base = endpoint(sandbox, "rudderstack", secret)
    partner = build_partner(
        destinations()["rudderstack"], replace(base, extra={"key_in_url": True})
    )
    delivery = Delivery(str(lake), HOUR, partner, Selection(), FAST)
    with pytest.raises(DeliveryStopped) as stopped:
        delivery.run()
    assert "writeKey=***" in caplog.text  # the push logged the URL, redacted
    assert secret not in caplog.text and secret not in str(stopped.value)
    assert not any(secret in p.read_text(errors="ignore") for p in lake.rglob("*") if p.is_file())


def test_gzip_bodies_arrive_whole(lake, sandbox):
    partner = build_partner(destinations()["rudderstack"], endpoint(sandbox, "rudderstack"))
    partner.options["gzip"] = True
    counts = Delivery(str(lake), HOUR, partner, Selection(), FAST).run()
    stats = sandbox.sims["rudderstack"].stats()
    assert counts["delivered"] == counts["selected"] == stats["unique_events"]
    assert stats["gzip_requests"] == counts["requests"] > 0


def test_retry_budget_exhausted_leaves_events_pending_and_fails(lake, sandbox):
    from currents_relay.delivery.engine import DeliveryIncomplete
    from currents_relay.tools.sandbox import Faults

    sandbox.sims["custom_http"].faults = Faults(rate=1.0, statuses=[503])
    delivery = deliver(
        lake, sandbox, "custom_http", policy=RetryPolicy(budget_seconds=0.3, base_delay=0.01)
    )
    with pytest.raises(DeliveryIncomplete, match="budget"):
        delivery.run()
    counts = delivery.counts()
    assert (
        counts["delivered"] == 0
        and counts["pending"] == counts["selected"] > 0
        and reconciles(counts)
    )


def test_treasure_data_takes_the_postback_url_as_brazes_setup_page_shows_it(lake, sandbox, caplog):
    key = sandbox.sims["treasure_data"].secret
    url = f"{sandbox.urls()['treasure_data']}/postback/v3/event/currents/events?td_write_key={key}"
    partner = build_partner(destinations()["treasure_data"], Endpoint(url))
    assert partner.endpoint.url == sandbox.urls()["treasure_data"]
    assert partner.endpoint.extra == {"database": "currents", "table": "events"}
    assert key in partner.secrets()
    caplog.set_level("DEBUG")
    counts = Delivery(str(lake), HOUR, partner, Selection()).run()
    assert counts["delivered"] == counts["selected"] > 0
    assert sandbox.sims["treasure_data"].stats()["discarded"] == 0  # the key was sent
    assert key not in caplog.text and key not in json.dumps(counts)
