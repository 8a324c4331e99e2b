"""The vectorised HTTP path maps exactly what the row path maps, and knows when to step aside."""

from __future__ import annotations

import pytest

from currents_relay.ingest.http_batch import http_tables
from currents_relay.ingest.normalize import MAX_STRING_CHARS, rows_to_table, to_canonical
from tests.conftest import http_samples, load


def lineage(n: int) -> dict:
    return {"source_uri": ["u"] * n, "source_offset": list(range(n)), "ingested_at": [None] * n}


def row_path(events: list) -> dict:
    grouped: dict = {}
    for offset, event in enumerate(events):
        row, reasons = to_canonical(event)
        if not reasons:
            grouped.setdefault(row["event_type"] or "", []).append((offset, row))
    return {
        t: rows_to_table(
            t,
            [r for _, r in rows],
            {
                "source_uri": ["u"] * len(rows),
                "source_offset": [o for o, _ in rows],
                "ingested_at": [None] * len(rows),
            },
        )
        for t, rows in grouped.items()
    }


@pytest.mark.samples
def test_all_real_samples_in_one_batch_map_like_the_row_path(samples):
    events = [load(p) | {"id": f"{i}"} for i, p in enumerate(http_samples())]
    tables, reasons = http_tables(events, lineage(len(events)))
    assert reasons == {}
    expected = row_path(events)
    assert set(tables) == set(expected)
    for event_type, table in tables.items():
        assert table.equals(expected[event_type]), event_type


def test_too_long_strings_leave_the_table_with_a_reason():
    event = {
        "event_type": "users.messages.email.Open",
        "id": "a",
        "time": 1,
        "user": {"user_id": "u"},
        "properties": {"email_address": "a@b.co"},
    }
    events = [
        event,
        event | {"id": "b", "properties": {"user_agent": "x" * (MAX_STRING_CHARS + 1)}},
    ]
    tables, reasons = http_tables(events, lineage(2))
    assert reasons == {1: ["too_long:user_agent"]}
    assert tables["users.messages.email.Open"]["id"].to_pylist() == ["a"]


# Events the fast path must leave to the row path.
NOT_PROVABLY_CLEAN = [
    {"time": "1"},
    {"time": 1.5},
    {"id": 5},
    {"properties": "x"},
    {"user": None},
    {"user": {"user_id": 5}},
    {"properties": {"email_address": 7}},
    {"properties": {"email_address": ["a"]}},
    {"time": True},
    {"time": 2.0**60},
    {"id": "\ud800"},
]
# Events with fields the catalogue does not know (kept in `extra`), or values it takes.
ODD_BUT_CLEAN = [
    {"surprise": 1, "also": None},
    {"user": {"user_id": "u", "nickname": "z", "gone": None}},
    {"properties": {"email_address": "a@b.co", "custom_properties": {"a": 1}}},
    {"properties": None},
    {"time": 7.0},
    {"properties": {"email_address": "a@b.co", "x": [1, {"y": 2}]}, "user": {"zz": 1}},
]


@pytest.mark.parametrize("bad", NOT_PROVABLY_CLEAN)
def test_anything_not_provably_clean_goes_to_the_row_path(bad):
    event = {
        "event_type": "users.messages.email.Open",
        "id": "a",
        "time": 1,
        "user": {"user_id": "u"},
        "properties": {"email_address": "a@b.co"},
    }
    assert http_tables([event, event | bad], lineage(2)) is None


@pytest.mark.parametrize("odd", ODD_BUT_CLEAN)
def test_fields_the_catalogue_does_not_know_land_in_extra_as_on_the_row_path(odd):
    event = {
        "event_type": "users.messages.email.Open",
        "id": "a",
        "time": 1,
        "user": {"user_id": "u"},
        "properties": {"email_address": "a@b.co"},
    }
    properties_first = {"properties": odd.pop("properties", event["properties"])}
    events = [event, properties_first | {k: v for k, v in event.items() if k != "properties"} | odd]
    events[1]["id"] = "b"
    tables, reasons = http_tables(events, lineage(2))
    assert reasons == {}
    expected = row_path(events)
    assert tables["users.messages.email.Open"].equals(expected["users.messages.email.Open"])
