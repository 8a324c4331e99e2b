"""What the push writes for each row: every partner's one wire definition, through orjson."""

from __future__ import annotations

import json

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import OFF_THE_WIRE
from currents_relay.delivery.partner import Endpoint
from currents_relay.delivery.wire import written
from currents_relay.ingest.normalize import http_tables, lineage_columns, to_http
from currents_relay.partners.custom_http import CustomHttp
from currents_relay.partners.mparticle import MAX_VALUE_CHARS, MParticle
from currents_relay.partners.segment import Segment
from tests.conftest import http_samples, load

HTTP = CustomHttp(Endpoint("https://x", password="t"))
FEEDS = {"ios": {"key": "ik", "secret": "is"}, "web": {"key": "wk", "secret": "ws"}}


def on_the_wire(frame: pl.DataFrame) -> pl.DataFrame:
    """What the engine hands the encoder: no derived or lineage columns."""
    return frame.select([c for c in frame.columns if c not in OFF_THE_WIRE])


@pytest.mark.samples
def test_every_real_http_sample_goes_out_as_braze_sent_it(samples):
    """Ingested into canonical rows and written by the push: Braze's own event, exactly
    (Treasure Data, RudderStack, Zeotap and custom HTTP receive this shape)."""
    events = {f"{i}": load(p) | {"id": f"{i}"} for i, p in enumerate(http_samples())}
    lineage = lineage_columns("u", list(range(len(events))), None)
    tables, _ = http_tables(list(events.values()), lineage)
    sent = 0
    for table in tables.values():
        encoded, routes = written(HTTP, on_the_wire(pl.from_arrow(table)))
        for body in encoded:
            event = json.loads(body)
            assert event == events[event["id"]]
            sent += 1
        assert set(routes) == {""}
    assert sent == len(events) > 0


def test_every_event_type_of_a_generated_hour_is_written_by_each_partner(ingested_lake):
    partners = [
        HTTP,
        Segment(Endpoint("https://x", password="wk"), {"anonymous_id_field": "user_id"}),
        MParticle(Endpoint("https://x", login="k", password="s", extra={"feeds": FEEDS})),
    ]
    for path in sorted(ingested_lake.glob("events/event_type=*/hour=*/*.parquet")):
        frame = on_the_wire(pl.from_arrow(pq.read_table(path)))
        for partner in partners:
            encoded, routes = written(partner, frame)
            assert len(encoded) == len(routes) == frame.height
            assert [json.loads(body) for body in encoded] == [
                partner.wire_event({k: v for k, v in row.items() if v is not None})
                for row in frame.to_dicts()
            ]


def test_nulls_are_left_out_and_custom_properties_are_nested_as_json():
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * 2,
            "id": ["a", "b"],
            "time": [1, 2],
            "external_user_id": ["u1", None],
            "name": ["n", None],
            "properties": ['{"n": 1.5, "s": "ü", "k": [1, {"x": null}]}', None],
            "extra": ['{"user.nick": "z", "properties.deep": {"a": 1}, "top": 2}', None],
        }
    )
    encoded, _ = written(HTTP, frame)
    first, second = (json.loads(body) for body in encoded)
    assert first == {
        "event_type": "users.behaviors.CustomEvent",
        "id": "a",
        "time": 1,
        "user": {"external_user_id": "u1", "nick": "z"},
        "properties": {
            "name": "n",
            "custom_properties": {"n": 1.5, "s": "ü", "k": [1, {"x": None}]},
            "deep": {"a": 1},
        },
        "top": 2,
    }
    assert second == {
        "event_type": "users.behaviors.CustomEvent",
        "id": "b",
        "time": 2,
        "user": {},
        "properties": {},
    }


@pytest.mark.parametrize(
    ("properties", "extra", "expected"),
    [
        ('{"x": NaN, "y": Infinity}', None, {"x": None, "y": None}),  # no reader takes NaN
        ('{"n": 1}', '{"big": 123456789012345678901234567890}', {"n": 1}),  # beyond 64 bits
        ('{"n": 1}', '{"s": "\\ud800"}', {"n": 1}),  # a lone surrogate
    ],
)
def test_values_orjson_refuses_are_still_written_as_json(properties, extra, expected):
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"],
            "id": ["a"],
            "time": [1],
            "properties": [properties],
            "extra": [extra],
        },
        schema_overrides={"extra": pl.String},
    )
    encoded, _ = written(HTTP, frame)
    row = {k: v for k, v in frame.row(0, named=True).items() if v is not None}
    event = to_http(row)
    assert encoded[0].startswith(b'{"event_type":"users.behaviors.CustomEvent"')
    if extra and "big" in extra:
        assert json.loads(encoded[0])["big"] == 123456789012345678901234567890
    elif extra:
        assert encoded[0].decode("utf-8", "surrogatepass").count("\ud800") == 1
    else:
        assert orjson.loads(encoded[0]) == orjson.loads(orjson.dumps(event))
    assert json.loads(encoded[0])["properties"]["custom_properties"] == expected


def test_segment_message_shape():
    partner = Segment(
        Endpoint("https://x", password="wk"),
        {"event_names": {"users.messages.email.Open": "Mail ✉"}},
    )
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.email.Open"] * 2,
            "id": ["a", "b"],
            "time": [1793527200, 1793527201],
            "external_user_id": ["u1", None],
            "user_id": ["b1", "b2"],
            "platform": ["ios", ""],
            "email_address": ["a@b.co", None],
        }
    )
    first, second = (json.loads(body) for body in written(partner, frame)[0])
    assert first["type"] == "track" and first["userId"] == "u1" and first["anonymousId"] == "b1"
    assert second["anonymousId"] == "b2" and "userId" not in second
    assert first["event"] == "Mail ✉" and first["messageId"] == "a"
    assert first["timestamp"] == "2026-11-01T10:00:00Z"
    assert first["context"]["os"] == {"name": "iOS"} and "os" not in second["context"]
    assert first["context"]["traits"] == {"email": "a@b.co"} and second["context"]["traits"] == {}


def test_mparticle_long_values_are_truncated_and_platforms_choose_the_feed():
    partner = MParticle(
        Endpoint("https://x", login="k", password="s", extra={"feeds": FEEDS}),
        {"historical": "realtime"},
    )
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.pushnotification.Send"] * 4,
            "id": ["a", "b", "c", "d"],
            "time": [1793527200] * 4,
            "external_user_id": ["u1", None, "", 'q"uote'],
            "platform": ["iOS", "android", None, "web"],
            "user_agent": ["x" * (MAX_VALUE_CHARS + 5), None, "é" * MAX_VALUE_CHARS, "\n"],
            "is_amp": [True, None, False, True],
        }
    )
    encoded, routes = written(partner, frame)
    assert routes == ["ios", "unbound", "unbound", "web"]
    assert partner.adjustments["values_truncated"] == 1
    first = json.loads(encoded[0])
    attributes = first["event"]["data"]["custom_attributes"]
    assert len(attributes["user_agent"]) == MAX_VALUE_CHARS and attributes["is_amp"] is True
    assert first["event"]["data"]["source_message_id"] == "a"
    assert first["event"]["data"]["timestamp_unixtime_ms"] == 1793527200000
