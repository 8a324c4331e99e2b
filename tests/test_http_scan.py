"""The scanned HTTP path: bodies read without an object per value give exactly the tables of
the orjson path (`http_tables`), and whatever it is not sure of is left to that path."""

from __future__ import annotations

import json
import random

import orjson
import pyarrow as pa
import pytest

from currents_relay.generator import generate_hour
from currents_relay.hours import parse_hour
from currents_relay.http_batch import http_tables, scanned_tables
from currents_relay.http_tape import Keys, Tape
from currents_relay.landing import list_hour, read_bytes
from tests.conftest import http_samples, load
from tests.test_http_batch import NOT_PROVABLY_CLEAN, ODD_BUT_CLEAN

OPEN = {
    "event_type": "users.messages.email.Open",
    "id": "a",
    "time": 1,
    "user": {"user_id": "u"},
    "properties": {"email_address": "a@b.co"},
}
PURCHASE = {
    "event_type": "users.behaviors.Purchase",
    "id": "p",
    "time": 2,
    "user": {"external_user_id": "e"},
    "properties": {"product_id": "x", "price": 9.99, "purchase_properties": {"size": "L"}},
}


def lineage(n: int) -> dict:
    return {"source_uri": ["u"] * n, "source_offset": list(range(n)), "ingested_at": [None] * n}


def both_paths(body: bytes) -> tuple[object, object]:
    """(the scanned path's answer or "refused", the orjson path's answer or "unreadable")."""
    tape = Tape(Keys(), rows=4, events=2)  # grown as the body needs
    scan = tape.add(body)
    try:
        parsed = orjson.loads(body)
        old = http_tables(parsed["events"], lineage(len(parsed["events"])))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        old = "unreadable"
    if scan is None:
        assert len(tape) == 0
        return "refused", old
    assert scan.events == len(tape)
    return scanned_tables(tape, lineage(len(tape))), old


def assert_same(new: object, old: object) -> None:
    assert new is not None and old is not None
    new_tables, new_reasons = new  # type: ignore[misc]
    old_tables, old_reasons = old  # type: ignore[misc]
    assert new_reasons == old_reasons
    assert list(new_tables) == list(old_tables)
    for event_type, table in new_tables.items():
        assert table.equals(old_tables[event_type]), event_type


def body_of(events: list, ensure_ascii: bool = True) -> bytes:
    return json.dumps({"events": events}, ensure_ascii=ensure_ascii).encode()


@pytest.mark.samples
def test_real_samples_scan_and_map_like_the_orjson_path(samples):
    events = [load(p) | {"id": f"{i}"} for i, p in enumerate(http_samples())]
    new, old = both_paths(body_of(events))
    assert_same(new, old)


@pytest.mark.parametrize("faults", [False, True])
def test_a_generated_hour_maps_like_the_orjson_path(tmp_path, faults):
    landing = str(tmp_path / "landing")
    generate_hour(landing, parse_hour("2026-11-01T10"), events=6_000, seed=3, faults=faults)
    tape, events, answers = Tape(Keys()), [], []
    for landed in list_hour(landing, parse_hour("2026-11-01T10")):
        if landed.format != "http":
            continue
        body = read_bytes(landed.uri)
        new, old = both_paths(body)
        answers.append(new)
        if new == "refused":
            assert landed.uri.endswith("batch-broken.json")  # the one file that is not JSON
        elif new is None:
            assert old is None
        else:
            assert_same(new, old)
        if old is not None and old != "unreadable":
            assert tape.add(body) is not None
            events += orjson.loads(body)["events"]
    assert len(tape) == len(events) > 2_000  # the batches the fast path takes, mapped together
    assert_same(scanned_tables(tape, lineage(len(tape))), http_tables(events, lineage(len(events))))
    tape.clear()
    assert len(tape) == 0 and len(tape.rows) == 0
    assert any(answer is None for answer in answers) == faults  # bad rows: the row path


@pytest.mark.parametrize(
    "odd",
    [
        *ODD_BUT_CLEAN,
        {"event_type": ""},
        {"event_type": None, "id": None},
        {"id": 'caf\u00e9 \u2603 \U0001f600 "q" \\ \n\t\u0001'},
        {"properties": {"email_address": "x" * (1 << 20 + 1)}},
    ],
)
def test_fields_and_values_the_scan_reads_map_as_on_the_orjson_path(odd):
    events = [OPEN, OPEN | odd | {"id": odd.get("id", "b")}, PURCHASE]
    for ensure_ascii in (True, False):
        new, old = both_paths(body_of(events, ensure_ascii))
        assert_same(new, old)


@pytest.mark.parametrize(
    "bad",
    [
        *(bad for bad in NOT_PROVABLY_CLEAN if bad != {"id": "\ud800"}),  # not UTF-8 JSON
        {"event_type": 3},
        {
            "event_type": "users.behaviors.Purchase",
            "properties": {"properties": "both", "purchase_properties": {}},
        },
    ],
)
def test_what_the_orjson_path_refuses_the_scanned_path_refuses(bad):
    new, old = both_paths(body_of([OPEN, OPEN | bad]))
    assert old is None
    assert new in (None, "refused")


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [], "more": 1}',  # `events` must be the only member
        b'{"more": 1, "events": []}',
        b'{"events": {}}',
        b'[{"event_type": "x"}]',
        b'{"events": [1]}',
        b'{"events": [{"id": "a", "id": "b"}]}',  # a key twice: orjson keeps the last
        b'{"events": [{"user": {"user_id": "a", "user_id": "b"}}]}',
        b'{"events": [{"user": {"user_id": "a"}, "user": {"user_id": "b"}}]}',
        b'{"events": [{"id": "\\ud800"}]}',  # a lone surrogate
        b'{"events": [{"id": "\\udc00x"}]}',
        b'{"events": [{"id": "\\ud800\\u0041"}]}',
        b'{"events": [{"id": "\\x"}]}',
        b'{"events": [{"id": "\\u12"}]}',
        b'{"events": [{"id": "a\x01"}]}',  # a raw control byte
        b'{"events": [{"id": "\xff"}]}',  # not UTF-8
        b'{"events": [{"t\\u0069me": 1}]}',  # an escaped key
        b'{"events": [{"time": 01}]}',
        b'{"events": [{"time": 1.}]}',
        b'{"events": [{"time": .5}]}',
        b'{"events": [{"time": -}]}',
        b'{"events": [{"time": 1e}]}',
        b'{"events": [{"time": +1}]}',
        b'{"events": [{"time": NaN}]}',
        b'{"events": [{"x": [1, 2,]}]}',
        b'{"events": [{"x": {"a" 1}}]}',
        b'{"events": [{"x": [' + b"[" * 70 + b"]" * 70 + b"]}]}",  # nested deeper than we read
        b'{"events": [{"id": "a"},]}',
        b'{"events": [{"id": "a"}]} x',
        b'{"events": [{"id": "a"}',
    ],
)
def test_bodies_outside_the_plain_shape_are_left_to_orjson(body):
    new, _ = both_paths(body)
    assert new == "refused"


def test_an_empty_batch_and_spaces_anywhere_scan():
    assert Tape(Keys()).add(b' \n{ "events" :\t[ ] }\r\n').events == 0
    spaced = (
        b'{ "events" : [ { "id" : "a" , "time" : -12 , "user" : { } , "properties" : null } ] }'
    )
    new, old = both_paths(spaced)
    assert_same(new, old)


def test_numbers_read_from_the_tape_match_orjson():
    rng = random.Random(5)
    prices = [
        rng.uniform(-1e6, 1e6),
        rng.random() * 10 ** rng.randint(-300, 300),
        -0.0,
        0.1,
        5e-324,
        1.7976931348623157e308,
    ]
    prices += [rng.uniform(0, 100) for _ in range(200)]
    events = [PURCHASE | {"id": f"{i}", "properties": {"price": p}} for i, p in enumerate(prices)]
    body = body_of(events)
    for text in (b"1E5", b"2.5e-7", b"-0.0", b"123456789012345678901234.5", b"1e400"):
        body = body.replace(b'"price": 0.1', b'"price": ' + text, 1) if text else body
    new, old = both_paths(body)
    if old is not None and new is not None:
        assert_same(new, old)
    times = [0, -1, 7, 2**53 + 1, 10**18 - 1, -(10**18) + 1, 10**18, 2**63 - 1, -(2**63)]
    events = [OPEN | {"id": f"{i}", "time": t} for i, t in enumerate(times)]
    new, old = both_paths(body_of(events))
    assert new is not None
    if old is not None:
        assert_same(new, old)


def test_escapes_decode_as_orjson_decodes_them():
    rng = random.Random(11)
    alphabet = 'ab"\\/\b\f\n\r\t\u0000\u001f\u007f\u00e9\u0800\uffff\U00010000\U0010ffff '
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    events = [OPEN | {"id": event_id} for event_id in ids]
    for ensure_ascii in (True, False):
        new, old = both_paths(body_of(events, ensure_ascii))
        assert_same(new, old)
        assert new[0]["users.messages.email.Open"]["id"].to_pylist() == ids  # type: ignore[index]


def test_mutated_bodies_never_scan_to_a_different_answer():
    rng = random.Random(2)
    events = [
        OPEN | {"id": "o1", "extra_top": [1, {"k": "v"}]},
        PURCHASE,
        OPEN | {"user": {"user_id": "u2", "timezone": "Europe/Paris"}, "id": "o2"},
    ]
    body = body_of(events)
    significant = b'{}[]:,"\\-.0123456789eEtrufalsn \x00\xc3'
    accepted = 0
    for _ in range(3_000):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated))
            change = rng.random()
            if change < 0.4:
                mutated[at] = rng.choice(significant)
            elif change < 0.7:
                del mutated[at]
            else:
                mutated.insert(at, rng.choice(significant))
        new, old = both_paths(bytes(mutated))
        if new == "refused":
            continue
        accepted += 1
        assert old != "unreadable", bytes(mutated)  # the scan never accepts what orjson refuses
        if new is None:
            continue
        assert_same(new, old)
    assert accepted > 300  # the mutations that keep a body valid are read by the scan


def test_a_full_key_table_refuses_the_body_instead_of_failing():
    tape = Tape(Keys(capacity=8))
    many = OPEN | {"properties": {f"field_{i}": "v" for i in range(20)}}
    assert tape.add(body_of([many])) is None
    assert len(tape) == 0 and len(tape.rows) == 0  # the tape as it was
    with pytest.raises(ValueError, match="power of 2"):
        Keys(capacity=6)


def test_a_value_of_a_lineage_type_is_kept():
    tape = Tape(Keys())
    tape.add(body_of([OPEN]))
    tables, _ = scanned_tables(
        tape,
        {"source_uri": ["s3://x"], "source_offset": [4], "ingested_at": [1_700_000_000_000_000]},
    )
    table = tables["users.messages.email.Open"]
    assert table["source_offset"].to_pylist() == [4]
    assert table["ingested_at"].type == pa.timestamp("us", tz="UTC")


def test_many_unknown_keys_cost_no_column_each():
    """Members no event type knows are only looked for, not laid out per event: a batch
    with thousands of distinct unknown keys keeps the per-member matrix to the known ones."""
    from currents_relay.http_batch import _Members

    events = [
        OPEN | {"id": f"{i}", "properties": {"email_address": "a@b.co", f"odd_{i}": i}}
        for i in range(2_000)
    ]
    tape = Tape(Keys())
    assert tape.add(body_of(events)) is not None
    members = _Members(tape, tape.keys)
    assert len(members.codes) > 2_000
    assert members.cells.shape[0] < 10
    assert members.odd.all()
    new, old = both_paths(body_of(events))
    assert_same(new, old)
