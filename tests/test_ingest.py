"""Ingest of a whole hour: counts reconcile, the lake is typed, re-runs replace the hour."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from currents_relay.catalogue import schema_for
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import HourIngest, IngestOptions, process_hour
from currents_relay.lake import Lake
from currents_relay.lake.versions import live_files
from tests.conftest import HOUR


def reconciles(report: dict) -> bool:
    events = report["events"]
    return events["read"] == events["written"] + events["quarantined"] + events["duplicates"]


def lake_table(lake: Path, event_type: str):
    files = live_files(Lake(str(lake)), HOUR, event_type)
    return ds.dataset(files, schema=schema_for(event_type), format="parquet").to_table()


def live_events(lake: Path) -> dict[str, bytes]:
    """Each live events file's bytes, by its path without the version."""
    return {
        re.sub(r"part-[^/]+$", "", path): Path(path).read_bytes()
        for path in live_files(Lake(str(lake)), HOUR)
    }


@pytest.fixture()
def processed(generated_hour, tmp_path):
    landing, summary = generated_hour
    report = process_hour(str(landing), str(tmp_path / "lake"), parse_hour(HOUR))
    return landing, summary, tmp_path / "lake", report


def test_generated_hour_reconciles_with_what_was_generated(processed):
    _, summary, _, report = processed
    assert reconciles(report)
    assert report["files"] == {
        "read": summary.files,
        "quarantined": summary.bad_files,
        "avro": report["files"]["avro"],
        "http": report["files"]["http"],
        "new_since_previous_run": None,
    }
    assert report["events"] == {
        "read": summary.events,
        "duplicates": summary.duplicates,
        "quarantined": summary.bad_rows,
        "written": sum(summary.by_event_type.values()),
    }
    assert report["by_event_type"] == summary.by_event_type
    assert report["quarantine_reasons"]["unreadable_file"] == 2


def test_the_generator_writes_the_same_files_for_the_same_seed_and_hour(tmp_path):
    from currents_relay.tools.generator import generate_hour

    def files(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    for name, hour in (("a", HOUR), ("b", HOUR), ("c", "2026-11-01T11")):
        generate_hour(str(tmp_path / name), parse_hour(hour), events=600, seed=5)
    first, again, other = (files(tmp_path / name) for name in "abc")
    assert first == again and len(first) > 5  # faults included, Avro files byte for byte
    ids = {m for body in first.values() for m in re.findall(rb'"id": "([0-9a-f-]{36})"', body)}
    later = {m for body in other.values() for m in re.findall(rb'"id": "([0-9a-f-]{36})"', body)}
    assert ids and later and not ids & later  # another hour, other event ids


def test_lake_is_typed_by_the_catalogue_and_ids_are_unique(processed):
    _, summary, lake, _ = processed
    for event_type, count in summary.by_event_type.items():
        table = lake_table(lake, event_type)
        assert table.num_rows == count
        stored = pq.read_schema(
            next((lake / "events" / f"event_type={event_type}").rglob("*.parquet"))
        )
        assert stored.remove_metadata().equals(schema_for(event_type).remove_metadata())
        assert len(set(table["id"].to_pylist())) == count
        assert table["timestamp"].null_count == 0


def test_quarantine_holds_source_position_payload_and_reasons(processed):
    _, _, lake, _ = processed
    rows = pq.read_table(lake / "quarantine" / f"hour={HOUR}").to_pylist()
    files = [r for r in rows if r["source_offset"] is None]
    assert {Path(r["source_uri"]).name for r in files} == {"batch-broken.json", "truncated.avro"}
    assert all(r["error"] and r["reasons"] == ["unreadable_file"] for r in files)
    event_rows = [r for r in rows if r["source_offset"] is not None]
    assert len(event_rows) == 5
    for row in event_rows:
        assert row["reasons"] and row["payload"]
        original = json.loads(Path(row["source_uri"]).read_text())["events"][row["source_offset"]]
        assert json.loads(row["payload"]) == original


def test_manifest_records_files_and_catalogue_version(processed):
    _, summary, lake, report = processed
    manifest = json.loads((lake / "manifests" / f"hour={HOUR}.json").read_text())
    assert manifest["catalogue_version"] == report["catalogue_version"]
    assert len(manifest["files"]) == summary.files
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["files"])
    assert sum(f["events"] for f in manifest["files"]) == report["events"]["read"]


def test_validation_results_keep_counts_and_positions_never_values(processed):
    _, _, lake, _ = processed
    manifest = json.loads((lake / "manifests" / f"hour={HOUR}.json").read_text())
    text = (lake / manifest["outputs"]["validation"]).read_text()
    assert "not-an-email" not in text
    results = json.loads(text)
    email = {r["rule"]: r for r in results["suites"]["currents.messages.email"]}
    assert email["malformed_email"]["unexpected_count"] == 1
    assert len(email["malformed_email"]["positions"]) == 1


def test_rerun_gives_the_same_lake_and_reports_no_new_files(generated_hour, tmp_path):
    landing, _ = generated_hour
    lake = tmp_path / "lake"
    first = process_hour(str(landing), str(lake), parse_hour(HOUR))
    snapshot = live_events(lake)
    second = process_hour(str(landing), str(lake), parse_hour(HOUR))
    assert snapshot == live_events(lake)
    assert first["events"] == second["events"]
    assert second["files"]["new_since_previous_run"] == 0


def test_rerun_replaces_the_hour_exactly(generated_hour, tmp_path):
    source, _ = generated_hour
    landing = tmp_path / "landing"
    shutil.copytree(source, landing)
    lake = tmp_path / "lake"
    process_hour(str(landing), str(lake), parse_hour(HOUR))
    for folder in landing.rglob("event_type=users.profile.Update"):
        shutil.rmtree(folder)
    report = process_hour(str(landing), str(lake), parse_hour(HOUR))
    assert reconciles(report)
    table = lake_table(lake, "users.profile.Update")
    assert table.num_rows == report["by_event_type"]["users.profile.Update"]
    assert all(
        "/http/" in uri for uri in table["source_uri"].to_pylist()
    )  # nothing left from the Avro files


def test_late_file_is_counted_as_new_and_ingested(generated_hour, tmp_path):
    source, _ = generated_hour
    landing = tmp_path / "landing"
    shutil.copytree(source, landing)
    lake = tmp_path / "lake"
    first = process_hour(str(landing), str(lake), parse_hour(HOUR))
    late = {
        "event_type": "users.messages.email.Open",
        "id": "late-1",
        "time": 1793527200,
        "user": {"user_id": "u", "external_user_id": "x"},
        "properties": {"email_address": "a@b.co"},
    }
    (landing / "http" / "date=2026-11-01-10" / "late.json").write_text(
        json.dumps({"events": [late]})
    )
    second = process_hour(str(landing), str(lake), parse_hour(HOUR))
    assert second["files"]["new_since_previous_run"] == 1
    assert second["events"]["written"] == first["events"]["written"] + 1


def test_dry_run_writes_nothing(generated_hour, tmp_path):
    landing, summary = generated_hour
    report = process_hour(str(landing), str(tmp_path / "lake"), parse_hour(HOUR), dry_run=True)
    assert report["dry_run"] and reconciles(report)
    assert report["events"]["written"] == sum(summary.by_event_type.values())
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.*"))


def test_small_flushes_give_the_same_lake_as_one_big_flush(generated_hour, tmp_path):
    """Streaming in chunks must not change any verdict, duplicate or row order."""
    landing, summary = generated_hour
    reports = []
    for name, flush_rows in (("small", 97), ("big", 10**9)):
        options = IngestOptions(flush_rows=flush_rows)
        reports.append(
            HourIngest(str(landing), str(tmp_path / name), parse_hour(HOUR), options).run()
        )
    assert reports[0]["events"] == reports[1]["events"]
    for event_type in summary.by_event_type:
        assert lake_table(tmp_path / "small", event_type).equals(
            lake_table(tmp_path / "big", event_type)
        )


def test_duplicates_keep_the_first_valid_copy(tmp_path):
    hour_dir = tmp_path / "landing" / "http" / "date=2026-11-01-10"
    hour_dir.mkdir(parents=True)
    base = {
        "event_type": "users.behaviors.CustomEvent",
        "id": "same",
        "time": 1793527200,
        "user": {"user_id": "u"},
        "properties": {"name": "first"},
    }
    invalid_copy = base | {"time": "nope"}
    second = json.loads(json.dumps(base))
    second["properties"]["name"] = "second"
    (hour_dir / "a.json").write_text(json.dumps({"events": [invalid_copy, base]}))
    (hour_dir / "b.json").write_text(json.dumps({"events": [second]}))
    report = process_hour(str(tmp_path / "landing"), str(tmp_path / "lake"), parse_hour(HOUR))
    assert report["events"] == {"read": 3, "duplicates": 1, "quarantined": 1, "written": 1}
    table = lake_table(tmp_path / "lake", "users.behaviors.CustomEvent")
    assert table["name"].to_pylist() == ["first"]
    assert table["source_offset"].to_pylist() == [1]


def test_generated_hours_have_their_own_event_ids(tmp_path):
    from currents_relay.tools.generator import generate_hour

    ids = []
    for hour in ("2026-11-01T10", "2026-11-01T11"):
        landing = tmp_path / hour
        generate_hour(str(landing), parse_hour(hour), events=500, faults=False)
        process_hour(str(landing), str(tmp_path / f"lake-{hour}"), parse_hour(hour))
        files = (tmp_path / f"lake-{hour}" / "events").rglob("*.parquet")
        ids.append({i for f in files for i in pq.read_table(f)["id"].to_pylist()})
    assert ids[0] and ids[1] and not ids[0] & ids[1]
