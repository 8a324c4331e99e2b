"""HTTP events map the same alone or in a batch: a refused value costs its own row only."""

from __future__ import annotations

import pytest

from currents_relay.ingest.normalize import (
    MAX_STRING_CHARS,
    http_tables,
    lineage_columns,
    to_canonical,
    to_http,
)
from tests.conftest import http_samples, load

EVENT = {
    "event_type": "users.messages.email.Open",
    "id": "a",
    "time": 1,
    "user": {"user_id": "u"},
    "properties": {"email_address": "a@b.co"},
}


def lineage(n: int) -> dict:
    return lineage_columns("u", list(range(n)), None)


def rows_of(tables: dict) -> dict[str, dict]:
    rows = {}
    for table in tables.values():
        for row in table.to_pylist():
            del row["timestamp"], row["source_uri"], row["source_offset"], row["ingested_at"]
            rows[row["id"]] = row
    return rows


@pytest.mark.samples
def test_all_real_samples_in_one_batch_map_as_each_alone(samples):
    events = [load(p) | {"id": f"{i}"} for i, p in enumerate(http_samples())]
    tables, reasons = http_tables(events, lineage(len(events)))
    assert reasons == {}
    assert len(tables) > 50
    batch = rows_of(tables)
    for event in events:
        alone, why = to_canonical(event)
        assert why == []
        assert batch[event["id"]] == alone, event["event_type"]


def test_too_long_strings_leave_the_table_with_a_reason():
    events = [
        EVENT,
        EVENT | {"id": "b", "properties": {"user_agent": "x" * (MAX_STRING_CHARS + 1)}},
    ]
    tables, reasons = http_tables(events, lineage(2))
    assert reasons == {1: ["too_long:user_agent"]}
    assert tables["users.messages.email.Open"]["id"].to_pylist() == ["a"]


# A value the catalogue refuses, and its reason.
REFUSED = [
    ({"time": "1"}, ["type_mismatch:time:int64"]),
    ({"time": 1.5}, ["type_mismatch:time:int64"]),
    ({"time": True}, ["type_mismatch:time:int64"]),
    ({"time": 2.0**64}, ["out_of_range:time:int64"]),
    ({"time": 2**64}, ["out_of_range:time:int64"]),
    ({"id": 5}, ["type_mismatch:id:string"]),
    ({"id": "\ud800"}, ["not_utf8:id"]),
    ({"user": {"user_id": 5}}, ["type_mismatch:user_id:string"]),
    ({"properties": {"email_address": 7}}, ["type_mismatch:email_address:string"]),
    ({"properties": {"email_address": ["a"]}}, ["type_mismatch:email_address:string"]),
    ({"properties": {"email_address": "a@b.co", "odd": "\udcff"}}, ["not_utf8:extra"]),
]


@pytest.mark.parametrize(("bad", "why"), REFUSED)
def test_a_refused_value_costs_its_row_only_with_the_reason_it_has_alone(bad, why):
    events = [EVENT, EVENT | {"id": "b"} | bad, EVENT | {"id": "c", "time": 2.0}]
    tables, reasons = http_tables(events, lineage(3))
    assert reasons == {1: why}
    assert to_canonical(events[1])[1] == why
    table = tables["users.messages.email.Open"]
    assert table["id"].to_pylist() == ["a", "c"]
    assert table["time"].to_pylist() == [1, 2]


# Events with fields the catalogue does not know (kept in `extra`), or values it takes.
ODD_BUT_CLEAN = [
    {"surprise": 1, "also": None},
    {"user": {"user_id": "u", "nickname": "z", "gone": None}},
    {"properties": {"email_address": "a@b.co", "custom_properties": {"a": 1}}},
    {"properties": None},
    {"user": "not an object"},
    {"time": 7.0},
    {"properties": {"email_address": "a@b.co", "x": [1, {"y": 2}]}, "user": {"zz": 1}},
]


@pytest.mark.parametrize("odd", ODD_BUT_CLEAN)
def test_fields_the_catalogue_does_not_know_land_in_extra_as_alone(odd):
    events = [EVENT, EVENT | {"id": "b"} | odd]
    tables, reasons = http_tables(events, lineage(2))
    assert reasons == {}
    batch = rows_of(tables)
    for event in events:
        assert batch[event["id"]] == to_canonical(event)[0]


def test_events_that_are_not_objects_or_have_no_usable_type_are_refused():
    events = [EVENT, ["x"], EVENT | {"id": "b", "event_type": 3}, None]
    tables, reasons = http_tables(events, lineage(4))
    assert reasons == {
        1: ["not_an_object:event"],
        2: ["type_mismatch:event_type:string"],
        3: ["not_an_object:event"],
    }
    assert tables["users.messages.email.Open"]["id"].to_pylist() == ["a"]


def test_the_banner_variation_id_is_one_column_under_either_formats_name():
    event = {
        "event_type": "users.messages.banner.Impression",
        "id": "b1",
        "time": 1,
        "user": {"user_id": "u"},
        "properties": {"canvas_step_message_variation_api_id": "v-1"},
    }
    row, reasons = to_canonical(event)
    assert reasons == [] and row["canvas_step_message_variation_id"] == "v-1"
    assert "canvas_step_message_variation_api_id" not in row and row["extra"] is None
    assert to_http(row) == event
