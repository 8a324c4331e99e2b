"""mParticle's column-at-a-time encoder writes the events, routes and adjustments of the row path."""

from __future__ import annotations

import json

import polars as pl
import pytest

from currents_relay.partners.mparticle import MAX_VALUE_CHARS, MParticle
from tests.delivery.test_http_wire import lake_frames, sample_frames
from tests.delivery.test_segment_mparticle import mparticle

FEEDS = {"ios": {"key": "ik", "secret": "is"}, "web": {"key": "wk", "secret": "ws"}}


def assert_same_events(frame: pl.DataFrame, feeds: dict | None = FEEDS) -> bool:
    """True when the chunk was encoded column-wise (and matched); False when it takes rows."""
    by_frame, by_row = mparticle(feeds), mparticle(feeds)
    encoded = by_frame.wire_frame(frame)
    if encoded is None:
        return False
    rows = frame.to_dicts()
    assert [json.loads(body) for body in encoded] == [by_row.wire_event(row) for row in rows]
    assert by_frame.frame_routes(frame) == [by_row.route(row) for row in rows]
    assert by_frame.adjustments == by_row.adjustments
    return True


def test_every_event_type_of_a_generated_hour(ingested_lake):
    taken = [assert_same_events(frame) for frame in lake_frames(ingested_lake)]
    assert sum(taken) > len(taken) / 2  # most types go column-wise (not those with floats)


@pytest.mark.samples
def test_every_real_sample(samples):
    for frame in sample_frames():
        assert_same_events(frame, feeds=None)


def test_long_values_nulls_and_platforms_follow_the_row_path():
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.pushnotification.Send"] * 4,
            "id": ["a", "b", "c", "d"],
            "time": [1, 2, 3, 4],
            "external_user_id": ["u1", None, "", 'q"uote'],
            "platform": ["iOS", "android", None, "web"],
            "device_model": ["x" * (MAX_VALUE_CHARS + 5), None, "é" * MAX_VALUE_CHARS, "\n"],
            "is_amp": [True, None, False, True],
            "send_id": [None, None, None, None],
        }
    )
    assert assert_same_events(frame)
    partner = mparticle(FEEDS)
    partner.wire_frame(frame)
    assert partner.adjustments["values_truncated"] == 1
    assert partner.frame_routes(frame) == ["ios", "unbound", "unbound", "web"]


def test_float_attributes_and_over_100_attributes_take_the_row_path():
    base = {"event_type": ["users.messages.email.Open"], "id": ["a"], "time": [1]}
    assert mparticle().wire_frame(pl.DataFrame(base | {"score": [0.1]})) is None
    wide = pl.DataFrame(base | {f"field_{i}": ["v"] for i in range(MParticle.max_events + 1)})
    assert mparticle().wire_frame(wide) is None


def test_unknown_fields_keep_a_chunk_column_wise():
    """`extra` is no attribute (the row path skips it), so its rows need not go by rows."""
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.email.Open"] * 3,
            "id": ["a", "b", "c"],
            "time": [1, 2, 3],
            "external_user_id": ["u1", "u2", None],
            "extra": ['{"user.nick": "z"}', None, '{"x": NaN}'],
        }
    )
    assert assert_same_events(frame)
