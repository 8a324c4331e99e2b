"""Segment and mParticle: their own event models, checked against schemas written from their docs."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import jsonschema
import orjson
import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import Delivery, RetryPolicy, Selection
from currents_relay.delivery.partner import ConfigurationError, Endpoint
from currents_relay.delivery.pii import PiiPolicy
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import destinations
from currents_relay.ingest.normalize import to_canonical
from currents_relay.partners.mparticle import MParticle, attribute_text, split_wire_event
from currents_relay.partners.segment import REGIONS, Segment, event_name
from tests.conftest import HOUR, http_samples, load
from tests.delivery.conftest import endpoint

FAST = RetryPolicy(budget_seconds=60, base_delay=0.01, max_delay=0.05)

# https://segment.com/docs/connections/spec/track/ and /spec/common/ (batch: /http-api/#batch)
SEGMENT_TRACK = {
    "type": "object",
    "required": ["type", "event", "messageId", "timestamp", "properties", "context"],
    "properties": {
        "type": {"const": "track"},
        "event": {"type": "string", "minLength": 1},
        "messageId": {"type": "string", "minLength": 1, "maxLength": 100},
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"},
        "userId": {"type": "string", "minLength": 1},
        "anonymousId": {"type": "string", "minLength": 1},
        "properties": {"type": "object"},
        "context": {
            "type": "object",
            "required": ["integration"],
            "properties": {
                "integration": {"type": "object", "required": ["name"]},
                "device": {"type": "object"},
                "os": {"type": "object"},
                "userAgent": {"type": "string"},
                "ip": {"type": "string"},
                "timezone": {"type": "string"},
            },
        },
    },
    "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
}
# https://docs.mparticle.com/developers/apis/json-reference/ (and /apis/http/ for the limits)
MPARTICLE_BULK = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "object",
        "required": ["environment", "user_identities", "events"],
        "properties": {
            "environment": {"enum": ["production", "development"]},
            "user_identities": {
                "type": "object",
                "required": ["customer_id"],
                "properties": {"customer_id": {"type": "string", "minLength": 1}},
            },
            "source_request_id": {"type": "string"},
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["event_type", "data"],
                    "properties": {
                        "event_type": {"const": "custom_event"},
                        "data": {
                            "type": "object",
                            "required": [
                                "event_name",
                                "custom_event_type",
                                "timestamp_unixtime_ms",
                                "source_message_id",
                            ],
                            "properties": {
                                "event_name": {"type": "string", "minLength": 1},
                                "custom_event_type": {
                                    "enum": [
                                        "navigation",
                                        "location",
                                        "search",
                                        "transaction",
                                        "user_content",
                                        "user_preference",
                                        "social",
                                        "media",
                                        "attribution",
                                        "other",
                                    ]
                                },
                                "custom_attributes": {
                                    "type": "object",
                                    "maxProperties": 100,
                                    "additionalProperties": {"type": "string", "maxLength": 4096},
                                },
                                "timestamp_unixtime_ms": {"type": "integer"},
                                "source_message_id": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def segment(**extra) -> Segment:
    return Segment(
        Endpoint("https://api.segment.io", password="wk", extra=extra),
        destinations()["segment"].options,
    )


def mparticle(feeds=None, **options) -> MParticle:
    extra = {"environment": "development", "feeds": feeds or {}}
    return MParticle(
        Endpoint("https://s2s.us1.mparticle.com", login="k", password="s", extra=extra), options
    )


def taken(partner) -> list:
    return [
        p
        for p in http_samples()
        if Selection().accepts(load(p)["event_type"], partner.default_event_types)
    ]


@pytest.mark.samples
@pytest.mark.parametrize("path", taken(Segment), ids=lambda p: load(p)["event_type"])
def test_every_real_sample_segment_takes_maps_to_a_valid_track_call(samples, path):
    event = load(path)
    row, _ = to_canonical(event)
    message = segment().wire_event(row)
    jsonschema.validate(message, SEGMENT_TRACK)
    assert (
        message["userId"] == event["user"]["external_user_id"]
        and message["messageId"] == event["id"]
    )
    assert message["timestamp"].startswith(
        "2034-06-13T"
    )  # the samples' placeholder time 2033802504
    assert len(orjson.dumps(message)) < 32_000


@pytest.mark.samples
@pytest.mark.parametrize("path", taken(MParticle), ids=lambda p: load(p)["event_type"])
def test_every_real_sample_mparticle_takes_maps_to_a_valid_batch(samples, path):
    event = load(path)
    row, _ = to_canonical(event)
    partner = mparticle()
    body = json.loads(partner.body([orjson.dumps(partner.wire_event(row))], "b1"))
    jsonschema.validate(body, MPARTICLE_BULK)
    data = body[0]["events"][0]["data"]
    assert body[0]["user_identities"]["customer_id"] == event["user"]["external_user_id"]
    assert (
        data["source_message_id"] == event["id"]
        and data["timestamp_unixtime_ms"] == event["time"] * 1000
    )


def test_segment_defaults_to_the_types_brazes_page_lists():
    accepts = Selection().accepts
    assert accepts("users.messages.email.Open", Segment.default_event_types)
    assert accepts("users.canvas.exit.PerformedEvent", Segment.default_event_types)
    assert not accepts("users.behaviors.Purchase", Segment.default_event_types)
    assert not accepts("users.messages.line.Send", MParticle.default_event_types)


def test_event_names_are_readable_and_overridable():
    assert event_name("users.messages.email.Open") == "Email Opened"
    assert event_name("users.messages.pushnotification.Send") == "Push Notification Sent"
    assert event_name("users.behaviors.Uninstall") == "Application Uninstalled"
    assert (
        event_name("users.messages.email.Open", {"users.messages.email.Open": "Mail Read"})
        == "Mail Read"
    )


def test_segment_region_picks_the_host_and_basic_auth_has_the_colon():
    eu = Segment(Endpoint("https://", password="wk", extra={"region": "eu"}))
    assert eu.endpoint.url == REGIONS["eu"]
    request = eu.request(b"{}", "b")
    assert request.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    with pytest.raises(ConfigurationError, match="region"):
        Segment(Endpoint("https://", password="wk", extra={"region": "mars"}))


def test_segment_anonymous_users_go_as_anonymous_id_when_configured():
    row = {"event_type": "users.messages.email.Open", "id": "e", "time": 1, "user_id": "braze-1"}
    assert "anonymousId" not in segment().wire_event(row)
    partner = Segment(Endpoint("https://x", password="wk"), {"anonymous_id_field": "user_id"})
    assert partner.wire_event(row)["anonymousId"] == "braze-1"


def test_segment_oversize_event_is_dead_lettered_as_too_large_and_never_sent(lake, sandbox):
    table = pq.read_table(lake / "events" / "event_type=users.messages.email.Open")
    rows = table.to_pylist()
    target = next(r for r in rows if r["external_user_id"])
    rows[rows.index(target)] = target | {"user_agent": "x" * 40_000}
    path = next((lake / "events" / "event_type=users.messages.email.Open").rglob("*.parquet"))
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
    partner = build_partner(destinations()["segment"], endpoint(sandbox, "segment"))
    counts = Delivery(str(lake), HOUR, partner, Selection(), FAST).run()
    dead = pq.read_table(lake / "dead_letter" / "segment").to_pylist()
    assert [(d["id"], d["reason"].split(":")[0]) for d in dead] == [(target["id"], "too_large")]
    assert counts["dead_lettered"] == 1 and counts["delivered"] == counts["selected"] - 1
    assert target["id"] not in sandbox.sims["segment"].accepted


def test_segment_sandbox_drops_batches_over_2500_events_with_a_200(sandbox):
    import requests

    messages = [
        {
            "type": "track",
            "event": "E",
            "messageId": f"m{i}",
            "userId": "u",
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for i in range(2_501)
    ]
    auth = {"Authorization": "Basic " + base64.b64encode(b"sandbox-segment-key:").decode()}
    answer = requests.post(
        sandbox.urls()["segment"] + "/v1/batch", json={"batch": messages}, headers=auth, timeout=10
    )
    assert answer.status_code == 200
    assert (
        sandbox.sims["segment"].stats()["discarded"] == 2_501
        and not sandbox.sims["segment"].accepted
    )


def test_mparticle_routes_events_to_their_platform_feed(lake, sandbox):
    sim = sandbox.sims["mparticle"]
    sim.feeds["ios"] = ("ios-key", "ios-secret")
    base = endpoint(sandbox, "mparticle")
    feeds = {
        "ios": {"key": "ios-key", "secret": "ios-secret"}
    }  # no android/web feed: those go to Unbound
    partner = build_partner(destinations()["mparticle"], replace(base, extra={"feeds": feeds}))
    counts = Delivery(str(lake), HOUR, partner, Selection(), FAST).run()
    by_feed = sim.stats()["by_feed"]
    assert by_feed["ios"] > 0 and by_feed["unbound"] > 0
    assert by_feed["ios"] + by_feed["unbound"] == counts["delivered"] == counts["selected"]
    ios_ids = {r["id"] for r in _platform_rows(lake, "ios")}
    assert ios_ids and all(i in sim.accepted for i in ios_ids)


def _platform_rows(lake, platform):
    rows = []
    for path in (lake / "events").rglob("*.parquet"):
        table = pq.read_table(path)
        if "platform" in table.column_names and table.schema.field("platform").type == "string":
            rows += [
                r
                for r in table.select(
                    ["id", "platform", "external_user_id", "event_type"]
                ).to_pylist()
                if r["platform"] == platform
                and r["external_user_id"]
                and Selection().accepts(r["event_type"], MParticle.default_event_types)
            ]
    return rows


def test_mparticle_groups_one_batch_per_user_with_a_stable_source_request_id():
    partner = mparticle()
    rows = [
        {
            "event_type": "users.messages.email.Open",
            "id": f"e{i}",
            "time": 10 + i,
            "external_user_id": f"user-{i % 2}",
        }
        for i in range(4)
    ]
    encoded = [orjson.dumps(partner.wire_event(r)) for r in rows]
    first, again = (json.loads(partner.body(encoded, "batch-abc")) for _ in range(2))
    assert first == again  # a resend carries the same source_request_id values
    assert [b["user_identities"]["customer_id"] for b in first] == ["user-0", "user-1"]
    assert [len(b["events"]) for b in first] == [2, 2]
    assert {b["source_request_id"] for b in first} == {"batch-abc-0", "batch-abc-1"}


def test_mparticle_truncates_long_values_and_drops_extra_attributes_and_counts_both():
    partner = mparticle()
    row = {
        "event_type": "users.messages.email.Open",
        "id": "e",
        "time": 1,
        "external_user_id": "u",
        "user_agent": "x" * 5_000,
    } | {f"field_{i}": "v" for i in range(120)}
    attributes = partner.wire_event(row)["event"]["data"]["custom_attributes"]
    assert len(attributes) == 100 and all(len(v) <= 4_096 for v in attributes.values())
    assert (
        partner.adjustments["values_truncated"] == 1
        and partner.adjustments["attributes_dropped"] > 0
    )


def test_mparticle_needs_the_unbound_feed_and_a_known_pod():
    with pytest.raises(ConfigurationError, match="Unbound"):
        MParticle(
            Endpoint(
                "https://s2s.us1.mparticle.com",
                extra={"feeds": {"ios": {"key": "k", "secret": "s"}}},
            )
        )
    assert (
        MParticle(Endpoint("https://", login="k", password="s", extra={"pod": "eu1"})).endpoint.url
        == "https://s2s.eu1.mparticle.com"
    )


def test_mparticle_wrong_credentials_are_403_and_stop(lake, sandbox):
    from currents_relay.delivery.engine import DeliveryStopped

    partner = build_partner(destinations()["mparticle"], endpoint(sandbox, "mparticle", "wrong"))
    with pytest.raises(DeliveryStopped, match="HTTP 403"):
        Delivery(str(lake), HOUR, partner, Selection(), FAST).run()


def test_pii_policy_hashes_or_drops_marked_fields_but_never_identities():
    row = {
        "event_type": "users.messages.email.Open",
        "id": "e",
        "time": 1,
        "external_user_id": "u",
        "user_id": "b",
        "email_address": " Ann@Example.com ",
        "user_agent": "Mozilla",
    }
    hashed = PiiPolicy.from_options({"pii": "hash"}).apply(row)
    import hashlib

    assert hashed["email_address"] == hashlib.sha256(b"ann@example.com").hexdigest()
    assert hashed["external_user_id"] == "u" and hashed["user_id"] == "b"
    dropped = PiiPolicy.from_options({"pii": {"default": "pass", "email_address": "drop"}}).apply(
        row
    )
    assert "email_address" not in dropped and dropped["user_agent"] == "Mozilla"
    with pytest.raises(ValueError, match="unknown action"):
        PiiPolicy.from_options({"pii": "encrypt"})


@pytest.mark.parametrize("user", [None, "", "u-1", 'quo"te', "back\\", '","event":{', "ünï"])
def test_mparticle_splits_its_wire_events_as_a_json_parser_would(user):
    row = {"event_type": "users.messages.email.Open", "id": "e", "time": 1, "x": '","event":'}
    message = mparticle().wire_event(row | {"external_user_id": user})
    encoded = orjson.dumps(message)
    assert split_wire_event(encoded) == (user or "", orjson.dumps(message["event"]))


@pytest.mark.parametrize("value", [True, False, 0, -7, 2**70, 1.5, 1e20, ["a", "b"], "s"])
def test_mparticle_attribute_text_is_the_values_json(value):
    assert attribute_text(value) == (value if isinstance(value, str) else json.dumps(value))
