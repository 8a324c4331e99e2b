"""Canonical rows: the HTTP <-> canonical mapping is exact, and typing is strict."""

from __future__ import annotations

import json

import pytest

from currents_relay.ingest.normalize import MAX_STRING_CHARS, coerce_value, to_canonical, to_http
from tests.conftest import http_samples, load


@pytest.mark.samples
@pytest.mark.parametrize("path", http_samples(), ids=lambda p: p.stem)
def test_every_http_sample_round_trips(samples, path):
    event = load(path)
    row, reasons = to_canonical(event)
    assert reasons == []
    assert to_http(row) == event


def test_nested_properties_become_json_column_and_come_back():
    event = {
        "event_type": "users.behaviors.Purchase",
        "id": "e1",
        "time": 1700000000,
        "user": {"user_id": "u", "external_user_id": "x"},
        "properties": {
            "price": 3.14,
            "product_id": "p",
            "currency": "EUR",
            "purchase_properties": {"a": [1, 2], "b": {"c": None}},
        },
    }
    row, reasons = to_canonical(event)
    assert reasons == []
    assert json.loads(row["properties"]) == {"a": [1, 2], "b": {"c": None}}
    assert row["price"] == 3.14 and isinstance(row["price"], float)
    assert to_http(row) == event


def test_unknown_fields_go_to_extra_with_their_path_and_come_back():
    event = {
        "event_type": "users.messages.email.Open",
        "id": "e1",
        "time": 1,
        "top": 1,
        "user": {"user_id": "u", "favourite_colour": "red"},
        "properties": {"email_address": "a@b.co", "brand_new_field": {"x": 1}},
    }
    row, reasons = to_canonical(event)
    assert reasons == []
    assert json.loads(row["extra"]) == {
        "top": 1,
        "user.favourite_colour": "red",
        "properties.brand_new_field": {"x": 1},
    }
    assert to_http(row) == event


def test_unknown_event_type_flows_with_everything_in_extra():
    event = {
        "event_type": "users.messages.hologram.Beam",
        "id": "e1",
        "time": 5,
        "user": {"external_user_id": "x"},
        "properties": {"beam": 1},
    }
    row, reasons = to_canonical(event)
    assert reasons == [] and row["external_user_id"] == "x"
    assert json.loads(row["extra"]) == {"properties.beam": 1}
    assert to_http(row) == event


@pytest.mark.parametrize(
    ("value", "kind", "expected", "reason"),
    [
        (1700000000, "int64", 1700000000, None),
        (1700000000.0, "int64", 1700000000, None),
        (1.5, "int64", None, "type_mismatch:f:int64"),
        ("123", "int64", None, "type_mismatch:f:int64"),
        (True, "int64", None, "type_mismatch:f:int64"),
        (2**63, "int64", None, "out_of_range:f:int64"),
        (1.79e26, "int64", None, "out_of_range:f:int64"),
        (3, "float64", 3.0, None),
        ("x", "bool", None, "type_mismatch:f:bool"),
        (["a", None], "list<string>", ["a", None], None),
        ([1], "list<string>", None, "type_mismatch:f:list<string>"),
        (7, "string", None, "type_mismatch:f:string"),
        ("bad \udcff bytes", "string", None, "not_utf8:f"),
        ("x" * (MAX_STRING_CHARS + 1), "string", None, "too_long:f"),
    ],
)
def test_coerce_value(value, kind, expected, reason):
    reasons: list[str] = []
    assert coerce_value("f", value, kind, reasons) == expected
    assert reasons == ([reason] if reason else [])


def test_non_object_event_is_a_structural_failure():
    _, reasons = to_canonical(["not", "an", "event"])
    assert reasons == ["not_an_object:event"]
