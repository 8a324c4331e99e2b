"""The polars encoder writes exactly the events `to_http` writes, row by row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import OFF_THE_WIRE, Delivery
from currents_relay.delivery.http_wire import http_json
from currents_relay.delivery.partner import Endpoint
from currents_relay.http_batch import http_tables
from currents_relay.normalize import to_http
from currents_relay.partners.custom_http import CustomHttp
from tests.conftest import http_samples, load


def wire_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """What the engine hands the encoder: no derived or lineage columns, no all-null ones."""
    return frame.select(
        [c for c in frame.columns if c not in OFF_THE_WIRE and frame[c].null_count() < frame.height]
    )


def lake_frames(lake: Path) -> Iterator[pl.DataFrame]:
    """Each event type of an ingested hour as the encoder gets it (rows with unknown fields,
    which take the row path, left out)."""
    for path in sorted(lake.glob("events/event_type=*/hour=*/*.parquet")):
        frame = wire_frame(pl.from_arrow(pq.read_table(path)))
        if "extra" in frame.columns:
            frame = frame.filter(pl.col("extra").is_null()).drop("extra")
        yield frame


def sample_frames() -> Iterator[pl.DataFrame]:
    """Every real Custom HTTP sample, one frame per event type, as the encoder gets it."""
    events = [load(p) | {"id": f"{i}"} for i, p in enumerate(http_samples())]
    lineage = {
        "source_uri": ["u"] * len(events),
        "source_offset": list(range(len(events))),
        "ingested_at": [None] * len(events),
    }
    tables, _ = http_tables(events, lineage)
    for table in tables.values():
        yield wire_frame(pl.from_arrow(table))


def assert_same_events(frame: pl.DataFrame) -> int:
    encoded = http_json(frame)
    assert encoded is not None
    expected = [to_http(row) for row in frame.to_dicts()]
    assert [json.loads(body) for body in encoded] == expected
    return len(encoded)


def test_every_event_type_of_a_generated_hour(ingested_lake):
    assert sum(assert_same_events(frame) for frame in lake_frames(ingested_lake)) > 4_000


@pytest.mark.samples
def test_every_real_sample(samples):
    for frame in sample_frames():
        assert_same_events(frame)


def test_rows_with_unknown_fields_are_written_byte_for_byte_as_the_row_path_writes_them():
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * 5,
            "id": ["a", "b", "c", "d", "e"],
            "time": [1, 2, 3, 4, 5],
            "external_user_id": ["u1", None, "u3", "u4", "u5"],
            "name": ["n", "n", None, "n", "n"],
            "properties": ['{"n": 1.5, "s": "ü"}', None, "{}", '{"k": [1, {"x": null}]}', None],
            "extra": [
                '{"surprise": 1}',
                '{"user.nick": "z", "properties.deep": {"a": [1.25, "q\\"x"]}}',
                None,
                '{"app_id": "shadow", "user.external_user_id": "twice"}',
                '{"properties.n": -0.0, "top": null}',
            ],
        }
    )
    encoded = http_json(frame)
    assert encoded is not None
    assert list(encoded) == [orjson.dumps(to_http(row)) for row in frame.to_dicts()]


@pytest.mark.parametrize(
    ("properties", "extra"),
    [
        ("NaN", '{"x": 1}'),  # stored JSON that orjson does not read
        ('{"n": 1}', '{"big": 123456789012345678901234567890}'),  # beyond 64 bits
        ('{"n": 1}', '{"s": "\\ud800"}'),  # a lone surrogate
    ],
)
def test_rows_orjson_cannot_carry_take_the_row_path(properties, extra):
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"],
            "id": ["a"],
            "time": [1],
            "properties": [properties],
            "extra": [extra],
        }
    )
    assert http_json(frame) is None


@pytest.mark.parametrize("extra", [None, '{"user.nick": "z"}'])
def test_stored_json_no_reader_takes_sends_the_chunk_by_the_row_path(extra):
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * 2,
            "id": ["a", "b"],
            "time": [1, 2],
            "properties": ['{"n": 1}', '{"x": NaN, "y": Infinity}'],
            "extra": [extra, None],
        },
        schema_overrides={"extra": pl.String},
    )
    assert http_json(frame) is None
    assert orjson.dumps(to_http(frame.row(1, named=True))).endswith(b'{"x":null,"y":null}}}')


def test_nulls_are_left_out_and_custom_properties_are_spliced_as_json():
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * 2,
            "id": ["a", "b"],
            "time": [1, 2],
            "external_user_id": ["u1", None],
            "name": [None, 'quote " and ünïcode'],
            "properties": ['{"n": 1, "nested": {"x": [1, 2]}}', None],
        }
    )
    assert_same_events(frame)


@pytest.mark.parametrize(
    "text",
    ["plain", "tab\there", 'a "quote"', "back\\slash", "nul\x00", "\x1f", "ünï €", ""],
)
def test_strings_integers_and_booleans_written_without_the_encoder_stay_exact(text):
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.email.Click"] * 3,
            "id": ["a", "b", "c"],
            "time": [1, None, -(2**62)],
            "external_user_id": ["u1", None, "u3"],
            "url": [text, "https://example.com/x?y=1", None],
            "is_amp": [True, None, False],
        }
    )
    assert assert_same_events(frame) == 3
    encoded = http_json(frame)
    assert encoded is not None and b'"is_amp":false' in encoded[2] and b"is_amp" not in encoded[1]


def test_a_chunk_with_some_unknown_fields_keeps_every_event_in_its_place(tmp_path):
    """The engine writes a chunk's usual rows from the template, the rows with `extra` by the
    row path, and puts each event back where its row was."""
    frame = pl.DataFrame(
        {
            "event_type": ["users.messages.email.Open"] * 5,
            "id": ["a", "b", "c", "d", "e"],
            "time": [1, 2, 3, 4, 5],
            "user_id": ["u1", None, "u3", "u4", "u5"],
            "extra": [None, '{"surprise": 1}', None, '{"user.nick": "z"}', None],
        }
    )
    partner = CustomHttp(Endpoint("http://127.0.0.1:9", password="k"))
    delivery = Delivery(str(tmp_path), "2026-11-01T10", partner)
    encoded = delivery._written(frame)
    assert encoded is not None
    assert [json.loads(event) for event in encoded] == [to_http(row) for row in frame.to_dicts()]


def test_rows_sharing_unknown_fields_are_written_from_one_template():
    """Once Braze adds a field, every row of a type has it: such rows stay on the template
    path (the stored JSON spliced as stored, the new fields where `to_http` puts them), and
    rarer sets, and sets that would replace a known member, are added row by row."""
    n = 80
    shared = (
        '{"user.nick": "ü\\"q", "properties.score": 0.1, "top": [1, {"a": null}], '
        '"properties.big": 12345678901234567890, "properties.tiny": 5e-324, "user.none": null}'
    )
    extra = [shared] * n
    extra[3] = None  # no unknown field
    extra[5] = '{"rare": -0.0}'  # a set of one row: added row by row
    extra[7] = '{"user.external_user_id": "twice"}'  # replaces a member: row by row
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * n,
            "id": [f"id{i}" for i in range(n)],
            "time": list(range(n)),
            "external_user_id": [f"u{i}" if i % 4 else None for i in range(n)],
            "name": ["n"] * n,
            "properties": ['{"n": 1.5, "s": "ü"}'] * n,
            "extra": extra,
        }
    )
    encoded = http_json(frame)
    assert encoded is not None
    expected = [to_http(row) for row in frame.to_dicts()]
    assert [json.loads(event) for event in encoded] == expected
    templated = [b'"custom_properties":{"n": 1.5, "s": "\xc3\xbc"}' in event for event in encoded]
    assert [i for i, spliced in enumerate(templated) if not spliced] == [5, 7]
    assert b'"big":12345678901234567890,' in encoded[0]  # an integer, never a float
    assert b'"user":{"external_user_id":"u1","nick":"\xc3\xbc\\"q","none":null}' in encoded[1]
    assert encoded[1].endswith(b'"tiny":5e-324},"top":[1,{"a":null}]}')


@pytest.mark.parametrize(
    "value", ["123456789012345678901234567890", '"\\ud800"', "-123456789012345678901"]
)
def test_shared_unknown_fields_orjson_cannot_write_take_the_row_path(value):
    n = 40
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * n,
            "id": [f"id{i}" for i in range(n)],
            "time": list(range(n)),
            "extra": [f'{{"x": {value}}}'] * n,
        }
    )
    assert http_json(frame) is None


def test_sets_of_unknown_fields_share_the_template_where_their_orders_agree():
    sets = ['{"a": 1, "b": 2}', '{"b": 3, "user.c": 4}', '{"user.c": 5, "a": 6}']
    n = 40 * len(sets)
    frame = pl.DataFrame(
        {
            "event_type": ["users.behaviors.CustomEvent"] * n,
            "id": [f"id{i}" for i in range(n)],
            "time": list(range(n)),
            "properties": ['{"n": 1}'] * n,
            "extra": [sets[i % len(sets)] for i in range(n)],
        }
    )
    encoded = http_json(frame)
    assert encoded is not None
    assert [json.loads(event) for event in encoded] == [to_http(r) for r in frame.to_dicts()]
    templated = [b'{"n": 1}' in event for event in encoded]
    # a, b, then c: the third set would put c before a
    assert templated == [i % len(sets) != 2 for i in range(n)]
