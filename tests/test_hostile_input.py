"""Hostile input is contained to its file, or to its row where the file parses, each with a
reason in quarantine; counts reconcile; the valid rows of a parsable file are written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import HourIngest, IngestOptions
from currents_relay.lake import Lake
from currents_relay.lake.versions import live_files, read_committed
from currents_relay.tools.generator import avro_schema, make_event
from tests.conftest import HOUR
from tests.test_bad_input import DATE, event

OPEN = "users.messages.email.Open"


def avro_bytes(event_type: str, n: int = 5) -> bytes:
    import random

    chooser = random.Random(2)
    records = [
        {
            k: v
            for k, v in make_event(event_type, chooser, parse_hour(HOUR), 10).items()
            if k != "event_type"
        }
        for i in range(n)
    ]
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(avro_schema(event_type)), records)
    return buffer.getvalue()


@pytest.fixture()
def hostile(tmp_path) -> Path:
    landing = tmp_path / "landing"
    http = landing / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    # A file name that is not UTF-8.
    os.close(os.open(os.fsencode(http) + b"/bad-\xff-name.json", os.O_CREAT | os.O_WRONLY))
    # Symlinks: a loop of folders, one to a folder, one to a file elsewhere.
    (http / "loop-a").mkdir()
    (http / "loop-a" / "back").symlink_to(http / "loop-a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps({"events": [event("from-outside")]}))
    (http / "to-a-folder").symlink_to(outside)
    (http / "to-a-file.json").symlink_to(outside / "secret.json")
    # A folder where a file is expected.
    (http / "folder.json").mkdir()
    # JSON nested 200,000 deep: a whole body, and one line of a JSON-lines file.
    (http / "deep.json").write_text('{"events": [' + "[" * 200_000 + "]" * 200_000 + "]}")
    lines = [json.dumps(event("line-ok")), "[" * 200_000 + "]" * 200_000]
    (http / "deep.ndjson").write_text("\n".join(lines) + "\n")
    # Out-of-range numbers: one row each, the others of the file written.
    out_of_range = [event("fine"), event("huge-time") | {"time": 1.79e26}]
    out_of_range.append(event("huge-int", campaign_id=None) | {"time": 10**30})
    (http / "numbers.json").write_text(json.dumps({"events": out_of_range}))
    # A 3 MB string: its row quarantined, the payload kept as a bounded prefix.
    (http / "big-string.json").write_text(
        json.dumps({"events": [event("big", user_agent="y" * 3_000_000), event("small")]})
    )
    # Gzip bodies, as Braze's Custom HTTP connector may deliver them.
    (http / "zipped.json.gz").write_bytes(
        gzip.compress(json.dumps({"events": [event("gz-1"), event("gz-2")]}).encode())
    )
    ndjson = "\n".join(json.dumps(event(f"gzl-{i}")) for i in range(3)) + "\n"
    (http / "zipped.jsonl.gz").write_bytes(gzip.compress(ndjson.encode()))
    (http / "bomb.json.gz").write_bytes(gzip.compress(b" " * 50_000_000))
    # Duplicate keys: the last one wins, as in JSON parsers generally.
    (http / "duplicate-keys.json").write_text(
        '{"events": [{"event_type": "' + OPEN + '", "id": "dup", "id": "dup-last", '
        '"time": 1793527200, "user": {"external_user_id": "x"}, "properties": {}}]}'
    )
    # An Avro file in another event type's folder.
    folder = landing / "dataexport.c.S3.integration.1" / f"event_type={OPEN}" / f"date={DATE}"
    folder.mkdir(parents=True)
    (folder / "right.avro").write_bytes(avro_bytes(OPEN))
    (folder / "wrong-type.avro").write_bytes(avro_bytes("users.messages.sms.Send"))
    return landing


def test_hostile_input_is_contained_with_its_reasons(hostile, tmp_path):
    lake = str(tmp_path / "lake")
    options = IngestOptions(max_file_bytes=20_000_000)
    report = HourIngest(str(hostile), lake, parse_hour(HOUR), options).run()
    events, files = report["events"], report["files"]
    assert events["read"] == events["written"] + events["quarantined"] + events["duplicates"]
    committed = read_committed(Lake(lake), HOUR)
    by_status = {}
    for entry in committed.manifest["files"]:
        by_status.setdefault(entry.get("reason") or entry["status"], []).append(entry["uri"])
    assert len(by_status["symlink"]) == 3 and len(by_status["not_a_file"]) == 1
    assert len(by_status["undecodable_file_name"]) == 1
    assert "\\xff" in by_status["undecodable_file_name"][0]
    assert [u.rsplit("/", 1)[1] for u in by_status["unreadable_file"]] == ["deep.json"]
    assert [u.rsplit("/", 1)[1] for u in by_status["too_large"]] == ["bomb.json.gz"]
    assert by_status["event_type_mismatch"][0].endswith("wrong-type.avro")
    assert files["quarantined"] == 3 + 1 + 1 + 2 + 1
    quarantine = [
        row
        for path in Lake(lake).fs.glob(f"{lake}/quarantine/**/*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    by_id = {row["id"]: row for row in quarantine if row["id"]}
    assert by_id["huge-time"]["reasons"] and by_id["huge-int"]["reasons"]
    big = by_id["big"]
    assert big["reasons"] == ["too_long:user_agent"]
    assert len(big["payload"]) <= 65_536 and big["payload_bytes"] > 3_000_000
    assert len(big["payload_sha256"]) == 64
    deep_line = [r for r in quarantine if r["source_uri"].endswith("deep.ndjson")]
    assert deep_line and deep_line[0]["reasons"] == ["malformed_json:line"]
    written = {}
    for url in live_files(Lake(lake), HOUR):
        for row in pq.read_table(url).to_pylist():
            written[row["id"]] = row
    for kept in ("fine", "small", "line-ok", "gz-1", "gz-2", "gzl-0", "gzl-2", "dup-last"):
        assert kept in written, kept
    assert "dup" not in written and "from-outside" not in written
    assert report["quarantine_reasons"]["symlink"] == 3


def test_a_file_over_the_size_limit_is_quarantined_unread(tmp_path):
    landing = tmp_path / "landing"
    http = landing / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    body = json.dumps({"events": [event(f"e{i}") for i in range(2_000)]}).encode()
    (http / "big.json").write_bytes(body)
    options = IngestOptions(max_file_bytes=len(body) - 1)
    report = HourIngest(str(landing), str(tmp_path / "lake"), parse_hour(HOUR), options).run()
    assert report["files"]["quarantined"] == 1 and report["events"]["read"] == 0
    assert report["quarantine_reasons"] == {"too_large": 1}
    (entry,) = read_committed(Lake(str(tmp_path / "lake")), HOUR).manifest["files"]
    assert entry["sha256"] is None or entry["sha256"] == hashlib.sha256(body).hexdigest()


def test_json_lines_end_at_newlines_only_so_a_line_separator_stays_in_its_string(tmp_path):
    landing = tmp_path / "landing"
    http = landing / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    name = "line\u2028separator\u2029paragraph\x85next"
    lines = [json.dumps(event("a") | {"properties": {"name": name}}, ensure_ascii=False)]
    lines.append(json.dumps(event("b")))
    (http / "batch.jsonl").write_text("\r\n".join(lines) + "\n\n", encoding="utf-8")
    report = HourIngest(str(landing), str(tmp_path / "lake"), parse_hour(HOUR)).run()
    assert report["events"] == {"read": 2, "duplicates": 0, "quarantined": 0, "written": 2}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENTS = st.lists(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"event_type": st.sampled_from([OPEN, "users.behaviors.CustomEvent", "x"]), "id": JSON},
            optional={"time": JSON, "user": JSON, "properties": JSON, "extra": JSON},
        ),
    ),
    max_size=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS, lines=st.booleans())
def test_the_http_reader_accounts_for_any_json_values(tmp_path_factory, events, lines):
    root = tmp_path_factory.mktemp("any")
    http = root / "landing" / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    if lines:
        text = "\n".join(json.dumps(e) for e in events)
        (http / "body.ndjson").write_text(text + "\n" if text else "")
    else:
        (http / "body.json").write_text(json.dumps({"events": events}))
    report = HourIngest(str(root / "landing"), str(root / "lake"), parse_hour(HOUR)).run()
    counted = report["events"]
    assert counted["read"] == counted["written"] + counted["quarantined"] + counted["duplicates"]
    assert counted["read"] == len(events) and report["files"]["quarantined"] == 0


def test_the_file_size_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CURRENTS_RELAY_MAX_FILE_BYTES", "1234")
    assert IngestOptions().max_file_bytes == 1234
    monkeypatch.setenv("CURRENTS_RELAY_MAX_FILE_BYTES", "lots")
    with pytest.raises(ValueError, match="CURRENTS_RELAY_MAX_FILE_BYTES"):
        IngestOptions()
