"""Segment's column-at-a-time encoder writes exactly the messages `wire_event` writes."""

from __future__ import annotations

import json

import polars as pl
import pytest

from currents_relay.delivery.partner import Endpoint
from currents_relay.partners.segment import Segment
from tests.delivery.test_http_wire import lake_frames, sample_frames

PLAIN = Segment(Endpoint("https://x", password="wk"))
ANONYMOUS = Segment(
    Endpoint("https://x", password="wk"),
    {"anonymous_id_field": "user_id", "event_names": {"users.messages.email.Open": "Mail Lu ✉"}},
)


def assert_same_messages(partner: Segment, frame: pl.DataFrame) -> int:
    encoded = partner.wire_frame(frame)
    assert encoded is not None
    expected = [partner.wire_event(row) for row in frame.to_dicts()]
    assert [json.loads(body) for body in encoded] == expected
    return len(encoded)


@pytest.mark.parametrize("partner", [PLAIN, ANONYMOUS], ids=["plain", "anonymous-id"])
def test_every_event_type_of_a_generated_hour(ingested_lake, partner):
    checked = sum(assert_same_messages(partner, frame) for frame in lake_frames(ingested_lake))
    assert checked > 4_000


@pytest.mark.samples
def test_every_real_sample(samples):
    for frame in sample_frames():
        assert_same_messages(ANONYMOUS, frame)


def test_truthiness_nulls_and_nested_properties_follow_the_row_path():
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.email.Open"] * 4,
            "id": ["a", "b", "c", "d"],
            "time": [0, 1_793_528_043, 2_000_000_000, 1],
            "user_id": ["braze-1", "", None, "braze-4"],
            "external_user_id": ["", "u2", None, None],
            "platform": ["", "ios", None, "web"],
            "os_version": [None, "", "17", None],
            "device_model": [None, None, None, 'say "hi"\n'],
            "ad_tracking_enabled": [False, None, True, None],
            "user_agent": ["", "Mozilla", None, "x"],
            "email_address": ["a@example.com", None, "ü@example.com", "\\"],
        }
    )
    for partner in (PLAIN, ANONYMOUS):
        assert assert_same_messages(partner, frame) == 4


def test_unknown_fields_are_spliced_into_properties_as_stored():
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * 3,
            "id": ["a", "b", "c"],
            "time": [1, 2, 3],
            "external_user_id": ["u1", "u2", None],
            "properties": ['{"n": 1.5}', None, '{"s": "ü"}'],
            "extra": ['{"user.nick": "z", "big": 123456789012345678901234567890}', None, "{}"],
        }
    )
    assert assert_same_messages(PLAIN, frame) == 3


@pytest.mark.parametrize(
    ("column", "text"),
    [("extra", '{"x": NaN}'), ("properties", '{"x": -Infinity}'), ("extra", '{"s": "NaN"}')],
)
def test_chunks_the_encoder_cannot_take_go_by_rows(column, text):
    frame = pl.DataFrame(
        {"event_type": ["users.behaviors.CustomEvent"], "id": ["a"], "time": [1], column: [text]}
    )
    assert PLAIN.wire_frame(frame) is None  # the row path writes such a float as null
    assert PLAIN.wire_frame(frame.with_columns(pl.col("time").cast(pl.Float64))) is None
