"""Segment and mParticle: what Braze's own integrations send, checked through each partner's
own library (Segment's `analytics-python` message checks, mParticle's Python SDK models)."""

from __future__ import annotations

import base64
import copy
import json
import time
import warnings
from dataclasses import replace
from datetime import datetime

import orjson
import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import Delivery, RetryPolicy, Selection
from currents_relay.delivery.partner import ConfigurationError, Endpoint
from currents_relay.delivery.pii import PiiPolicy
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import destinations
from currents_relay.ingest.normalize import to_canonical
from currents_relay.partners import mparticle as mp
from currents_relay.partners.mparticle import MParticle, attribute_value, split_wire_event
from currents_relay.partners.segment import REGIONS, Segment, event_name
from tests.conftest import HOUR, avro_samples, http_samples, load
from tests.delivery.conftest import endpoint

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the SDK's own SyntaxWarning
    import mparticle as sdk
from segment.analytics.client import Client

FAST = RetryPolicy(budget_seconds=60, base_delay=0.01, max_delay=0.05)


def through_segment_library(message: dict) -> dict:
    """The track call Segment's Python library builds from the same fields (it checks them)."""
    _, built = Client("write-key", send=False).track(
        user_id=message.get("userId"),
        anonymous_id=message.get("anonymousId"),
        event=message["event"],
        properties=copy.deepcopy(message["properties"]),
        context=copy.deepcopy(message["context"]),
        timestamp=datetime.fromisoformat(message["timestamp"]),
        integrations=message.get("integrations"),
        message_id=message["messageId"],
    )
    del built["context"]["library"]
    built["timestamp"] = message["timestamp"]  # the library writes milliseconds
    return built


def through_mparticle_sdk(batch: dict) -> dict:
    """The batch mParticle's Python SDK serializes from the same members (its models refuse
    unknown names, custom events without a name and unknown custom event types)."""
    events = []
    for event in batch["events"]:
        if event["event_type"] == "uninstall":  # the SDK has no model for it
            assert set(event["data"]) == {
                "custom_attributes",
                "source_message_id",
                "timestamp_unixtime_ms",
            }
            continue
        assert event["event_type"] == "custom_event"
        events.append(sdk.AppEvent(**event["data"]))
    built = sdk.Batch(
        environment=batch["environment"],
        schema_version=batch["schema_version"],
        user_identities=sdk.UserIdentities(**batch["user_identities"]),
        user_attributes=batch["user_attributes"],
        device_info=sdk.DeviceInformation(**batch["device_info"]),
        source_request_id=batch["source_request_id"],
        events=events,
    )
    serialized = sdk.ApiClient.sanitize_for_serialization(built)
    serialized["events"] = [
        {"event_type": "custom_event", "data": e} for e in serialized.get("events", [])
    ]
    return serialized


def custom_events(batch: dict) -> dict:
    return batch | {"events": [e for e in batch["events"] if e["event_type"] == "custom_event"]}


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
def test_every_real_sample_segment_takes_is_the_track_call_brazes_integration_sends(samples, path):
    event = load(path)
    row, _ = to_canonical(event)
    message = segment().wire_event(row)
    built = through_segment_library(message)
    assert {k: v for k, v in built.items() if v != {} or k != "integrations"} == message
    assert message["userId"] == event["user"]["external_user_id"]
    assert message["anonymousId"] == event["user"]["user_id"]
    assert message["messageId"] == event["id"]
    assert message["timestamp"].startswith("2034-06-13T")  # the samples' time 2033802504
    assert "timezone" not in message["properties"] and "user_id" not in message["properties"]
    if "email_address" in event["properties"]:
        assert message["context"]["traits"]["email"] == event["properties"]["email_address"]
        assert "email_address" not in message["properties"]
    if "app_id" in event["properties"]:
        assert message["properties"]["app_id"] == event["properties"]["app_id"]
    assert len(orjson.dumps(message)) < 32_000


@pytest.mark.samples
@pytest.mark.parametrize("path", taken(MParticle), ids=lambda p: load(p)["event_type"])
def test_every_real_sample_mparticle_takes_is_the_batch_brazes_integration_sends(samples, path):
    event = load(path)
    row, _ = to_canonical(event)
    partner = mparticle()
    (batch,) = json.loads(partner.body([orjson.dumps(partner.wire_event(row))], "b1"))
    assert through_mparticle_sdk(batch) == custom_events(batch)
    (sent,) = batch["events"]
    data = sent["data"]
    assert batch["user_identities"]["customerid"] == event["user"]["external_user_id"]
    assert (
        data["source_message_id"] == event["id"] == data["custom_attributes"]["source_request_id"]
    )
    assert data["timestamp_unixtime_ms"] == event["time"] * 1000
    assert "user_id" not in data["custom_attributes"]
    assert batch["device_info"].get("ios_idfv") is None  # the samples' device_id is no UUID
    if "email_address" in event["properties"]:
        assert batch["user_identities"]["email"] == event["properties"]["email_address"]
    is_uninstall = event["event_type"] == "users.behaviors.Uninstall"
    assert sent["event_type"] == ("uninstall" if is_uninstall else "custom_event")


# Braze's Currents event glossary (braze-docs, _docs/_user_guide/data/distribution/
# braze_currents/event_glossary/message_engagement_events.md), its Segment and mParticle tabs:
# the event name, and the fields in `properties` / `custom_attributes` (without
# mParticle's `source_request_id`).
CAMPAIGN_CANVAS = {
    "app_group_id",
    "campaign_id",
    "campaign_name",
    "canvas_id",
    "canvas_name",
    "canvas_step_id",
    "canvas_step_name",
    "canvas_variation_id",
    "canvas_variation_name",
    "device_id",
    "dispatch_id",
    "message_variation_id",
    "message_variation_name",
    "send_id",
}
EMAIL = CAMPAIGN_CANVAS | {"esp", "from_domain", "ip_pool"}
GLOSSARY = {
    "users.messages.email.Delivery": ("Email Delivered", "Email Deliveries", EMAIL),
    "users.messages.email.Send": ("Email Sent", "Email Sends", EMAIL | {"message_extras"}),
    "users.messages.email.Open": (
        "Email Opened",
        None,
        EMAIL
        | {
            "browser",
            "device_class",
            "device_os",
            "is_amp",
            "machine_open",
            "mailbox_provider",
            "user_agent",
        },
    ),
    "users.behaviors.Uninstall": (  # mParticle's `uninstall` event carries no name
        "Application Uninstalled",
        None,
        {"app_group_id", "app_id", "device_id"},
    ),
}


def sample_row(event_type: str, form: str) -> dict:
    """The canonical row of the real sample of `event_type` in that format."""
    if form == "http":
        event = next(load(p) for p in http_samples() if load(p)["event_type"] == event_type)
        return to_canonical(event)[0]
    import fastavro
    import pyarrow as pa

    from currents_relay.ingest.normalize import avro_table, lineage_columns

    path = next(p for p in avro_samples() if p.stem == event_type)
    with path.open("rb") as handle:
        records = list(fastavro.reader(handle))[:1]
    lineage = lineage_columns("s", [0], None)
    table, reasons = avro_table(event_type, pa.Table.from_pylist(records), lineage)
    assert reasons == {}
    return table.to_pylist()[0]


@pytest.mark.samples
@pytest.mark.parametrize("form", ["http", "avro"])
@pytest.mark.parametrize("event_type", sorted(GLOSSARY))
def test_the_fields_each_partner_gets_are_those_of_brazes_glossary(samples, event_type, form):
    segment_name, mparticle_name, fields = GLOSSARY[event_type]
    row = sample_row(event_type, form)
    present = {k for k, v in row.items() if v is not None}
    message = segment().wire_event(row)
    assert message["event"] == segment_name
    assert set(message["properties"]) == fields & present
    partner = mparticle()
    wire = partner.wire_event(row)["event"]["data"]
    if mparticle_name:
        assert wire["event_name"] == mparticle_name and wire["custom_event_type"] == "other"
    assert set(wire["custom_attributes"]) == (fields & present) | {"source_request_id"}


def test_email_click_url_goes_to_segment_as_link_url_and_phones_are_traits():
    click = {
        "event_type": "users.messages.email.Click",
        "id": "e",
        "time": 1,
        "user_id": "b",
        "url": "https://x.example/a",
        "email_address": "a@b.co",
    }
    message = segment().wire_event(click)
    assert message["event"] == "Email Link Clicked"
    assert message["properties"] == {"link_url": "https://x.example/a"}
    assert message["context"]["traits"] == {"email": "a@b.co"}
    sms = {"event_type": "users.messages.sms.Delivery", "id": "s", "time": 1, "user_id": "b"}
    sms["to_phone_number"] = "+14155552671"
    assert segment().wire_event(sms)["context"]["traits"] == {"phone": "+14155552671"}
    batch = mparticle().wire_event(sms)["batch"]
    assert batch["user_attributes"] == {"$mobile": "+14155552671"}


@pytest.mark.parametrize(
    ("event_type", "name"),
    [
        ("users.messages.pushnotification.Open", "Push Notification Tapped"),
        ("users.messages.pushnotification.IosForeground", "iOS Foreground Push Opened"),
        ("users.messages.email.Click", "Email Link Clicked"),
        ("users.messages.sms.CarrierSend", "SMS Sent to Carrier"),
        ("users.messages.sms.InboundReceive", "SMS Inbound Received"),
        ("users.campaigns.EnrollInControl", "Campaign Control Group Entered"),
        ("users.messages.email.MarkAsSpam", "Email Marked As Spam"),
        ("users.canvas.Entry", "Canvas Entered"),
        ("users.campaigns.Conversion", "Campaign Converted"),
        ("users.behaviors.subscriptiongroup.StateChange", "Subscription Group State Changed"),
    ],
)
def test_segment_event_names_are_those_of_brazes_segment_page(event_type, name):
    assert event_name(event_type) == name


def test_segment_os_name_and_integrations_option():
    row = {"event_type": "users.messages.pushnotification.Send", "id": "e", "time": 1}
    row |= {"user_id": "b", "platform": "ios", "os_version": "17.1", "device_model": "iPhone15"}
    context = segment().wire_event(row)["context"]
    assert context["os"] == {"name": "iOS", "version": "17.1"}
    assert context["device"] == {"model": "iPhone15"}
    quiet = Segment(
        Endpoint("https://x", password="wk"),
        {"integrations": {"Braze Cloud Mode (Actions)": False}},
    )
    assert quiet.wire_event(row)["integrations"] == {"Braze Cloud Mode (Actions)": False}
    assert "integrations" not in segment().wire_event(row)


def test_mparticle_device_info_by_platform_and_advertising_id_type():
    row = {"event_type": "users.messages.pushnotification.Send", "id": "e", "time": 1}
    device = "6f1c2a9e-8b7d-4c00-9a2b-3c4d5e6f7a8b"
    row |= {"external_user_id": "u", "device_id": device, "platform": "android"}
    row |= {"ad_id": "gaid-1", "ad_id_type": "google_ad_id", "push_token": "tok"}
    assert mparticle().wire_event(row)["batch"]["device_info"] == {
        "android_uuid": device,
        "android_advertising_id": "gaid-1",
        "push_token": "tok",
    }
    ios = row | {"platform": "ios", "ad_id": "idfa-1", "ad_id_type": "ios_idfa"}
    assert mparticle().wire_event(ios)["batch"]["device_info"] == {
        "ios_idfv": device,
        "ios_advertising_id": "idfa-1",
        "push_token": "tok",
    }


def test_mparticle_events_older_than_30_days_go_to_the_historical_endpoint_and_are_counted():
    partner = mparticle()
    now = int(time.time())
    old = {"event_type": "users.messages.email.Open", "id": "o", "time": now - 31 * 86_400}
    new = old | {"id": "n", "time": now - 3600}
    assert partner.route(old) == "unbound/historical" and partner.route(new) == "unbound"
    assert partner.adjustments["historical"] == 1
    assert partner.request(b"[]", "b", "unbound/historical").url.endswith(
        "/v2/bulkevents/historical"
    )
    assert partner.request(b"[]", "b", "unbound").url.endswith("/v2/bulkevents")
    realtime = mparticle(historical="realtime")
    assert realtime.route(old) == "unbound"


def test_segment_defaults_to_the_types_brazes_page_lists():
    accepts = Selection().accepts
    assert accepts("users.messages.email.Open", Segment.default_event_types)
    assert accepts("users.canvas.exit.PerformedEvent", Segment.default_event_types)
    assert not accepts("users.behaviors.Purchase", Segment.default_event_types)
    assert not accepts("users.messages.line.Send", MParticle.default_event_types)


def test_event_names_are_overridable():
    overrides = {"users.messages.email.Open": "Mail Read"}
    assert event_name("users.messages.email.Open", overrides) == "Mail Read"
    assert mp.event_name("users.messages.email.Open", overrides) == "Mail Read"
    assert mp.event_name("users.canvas.Entry") == "Canvas Entries"


def test_segment_region_picks_the_host_and_basic_auth_has_the_colon():
    eu = Segment(Endpoint("https://", password="wk", extra={"region": "eu"}))
    assert eu.endpoint.url == REGIONS["eu"]
    request = eu.request(b"{}", "b")
    assert request.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    with pytest.raises(ConfigurationError, match="region"):
        Segment(Endpoint("https://", password="wk", extra={"region": "mars"}))


def test_segment_sends_the_braze_user_id_as_anonymous_id_on_every_event():
    row = {"event_type": "users.messages.email.Open", "id": "e", "time": 1, "user_id": "braze-1"}
    assert segment().wire_event(row)["anonymousId"] == "braze-1"
    both = segment().wire_event(row | {"external_user_id": "x"})
    assert both["anonymousId"] == "braze-1" and both["userId"] == "x"


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
    assert [b["user_identities"]["customerid"] for b in first] == ["user-0", "user-1"]
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
    assert attributes["source_request_id"] == "e"
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


@pytest.mark.parametrize("user", [None, "", "u-1", 'quo"te', "back\\", '},"event":{', "ünï"])
def test_mparticle_splits_its_wire_events_as_a_json_parser_would(user):
    row = {"event_type": "users.messages.email.Open", "id": "e", "time": 1, "x": '},"event":'}
    message = mparticle().wire_event(row | {"external_user_id": user, "email_address": user})
    members, event = split_wire_event(orjson.dumps(message))
    assert orjson.loads(b"{" + members + b"}") == message["batch"]
    assert event == orjson.dumps(message["event"])


@pytest.mark.parametrize(
    ("value", "sent"),
    [(True, True), (0, 0), (-7, -7), (1.5, 1.5), ("s", "s"), (["a", "b"], '["a", "b"]')],
)
def test_mparticle_attributes_keep_numbers_and_booleans_and_send_lists_as_json(value, sent):
    assert attribute_value(value) == sent
