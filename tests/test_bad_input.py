"""The bad-input corpus: every kind of bad input lands where it should, counts reconcile."""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow.parquet as pq
import pytest

from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.ingest.normalize import MAX_STRING_CHARS
from currents_relay.tools.generator import avro_schema, make_event
from tests.conftest import HOUR

DATE = "2026-11-01-10"
T = 1793527200


def event(event_id: str = "e1", **properties) -> dict:
    return {
        "event_type": "users.messages.email.Open",
        "id": event_id,
        "time": T,
        "user": {"user_id": "u1", "external_user_id": "x1"},
        "properties": {"email_address": "a@example.com", **properties},
    }


@pytest.fixture()
def corpus(tmp_path):
    landing = tmp_path / "landing"
    http = landing / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    good = [event(f"good-{i}") for i in range(3)]
    missing_id = event("x")
    del missing_id["id"]
    unknown_field = event("unknown-field") | {"new_top_level": {"a": 1}}
    events = [
        *good,
        missing_id,
        event("bad-time") | {"time": 1793527200.5},
        event("wrong-type", campaign_id=12345),
        event("huge", user_agent="x" * (MAX_STRING_CHARS + 1)),
        event("bad-email", email_address="nobody"),
        {
            "event_type": "users.messages.hologram.Beam",
            "id": "unknown-type",
            "time": T,
            "user": {"external_user_id": "x"},
            "properties": {"beam": 1},
        },
        unknown_field,
    ]
    (http / "batch.json").write_text(json.dumps({"events": events}))
    # Non-UTF-8 bytes inside one event's string: only that event is quarantined.
    raw = (
        json.dumps({"events": [event("utf8-ok"), event("NOT_UTF8")]})
        .encode()
        .replace(b"NOT_UTF8", b"bad\xff\xfe")
    )
    (http / "latin1.json").write_bytes(raw)
    (http / "broken.json").write_text('{"events": [')
    (http / "not-a-batch.json").write_text('["just", "a", "list"]')
    lines = [json.dumps(event("line-1")), "{not json", json.dumps(event("line-3"))]
    (http / "events.ndjson").write_text("\n".join(lines) + "\n")
    avro_dir = (
        landing
        / "dataexport.c.S3.integration.1"
        / "event_type=users.messages.email.Open"
        / f"date={DATE}"
        / "1"
        / "z"
    )
    avro_dir.mkdir(parents=True)
    buffer = io.BytesIO()
    records = [
        {
            k: v
            for k, v in make_event(
                "users.messages.email.Open", __import__("random").Random(1), parse_hour(HOUR), 10
            ).items()
            if k != "event_type"
        }
        for _ in range(20)
    ]
    fastavro.writer(
        buffer, fastavro.parse_schema(avro_schema("users.messages.email.Open")), records
    )
    (avro_dir / "ok.avro").write_bytes(buffer.getvalue())
    (avro_dir / "truncated.avro").write_bytes(buffer.getvalue()[:300])
    (avro_dir / "garbage.avro").write_bytes(b"this is not avro at all")
    return landing


def test_corpus_lands_where_it_should(corpus, tmp_path):
    lake = tmp_path / "lake"
    report = process_hour(str(corpus), str(lake), parse_hour(HOUR))
    events = report["events"]
    assert events["read"] == events["written"] + events["quarantined"] + events["duplicates"]
    assert report["files"]["read"] == 8
    assert (
        report["files"]["quarantined"] == 4
    )  # broken.json, not-a-batch.json, truncated.avro, garbage.avro
    # batch.json 10 + latin1 2 + ndjson 3 + ok.avro 20
    assert events["read"] == 35
    assert report["quarantine_reasons"] == {
        "missing:id": 1,
        "type_mismatch:time:int64": 1,
        "type_mismatch:campaign_id:string": 1,
        "too_long:user_agent": 1,
        "malformed_email:email_address": 1,
        "not_utf8:id": 1,
        "malformed_json:line": 1,
        "unreadable_file": 4,
    }
    assert events["quarantined"] == 7
    assert report["by_event_type"]["users.messages.hologram.Beam"] == 1
    quarantine = pq.read_table(lake / "quarantine").to_pylist()
    by_id = {row["id"]: row for row in quarantine if row["id"]}
    huge = by_id["huge"]  # a bounded prefix of the payload, with its size and checksum
    assert len(huge["payload"]) == 65_536 and huge["payload"].startswith('{"event_type"')
    assert huge["payload_bytes"] > MAX_STRING_CHARS and len(huge["payload_sha256"]) == 64
    assert all(row["payload"] for row in quarantine if row["source_offset"] is not None)
    written = pq.read_table(lake / "events" / "event_type=users.messages.email.Open").to_pylist()
    extra = {row["id"]: row["extra"] for row in written}
    assert json.loads(extra["unknown-field"]) == {"new_top_level": {"a": 1}}
    assert "good-0" in extra and "line-3" in extra and "utf8-ok" in extra


def test_missing_landing_zone_is_a_clear_error(tmp_path):
    from currents_relay.ingest.landing import LandingError

    with pytest.raises(LandingError, match="does not exist"):
        process_hour(str(tmp_path / "nowhere"), str(tmp_path / "lake"), parse_hour(HOUR))
