"""Conformance with the real Braze samples, read in place from ../shared/currents-samples.

The samples reuse a few placeholder ids, so each sample is processed as its own hour (its
own landing zone of one symlinked file, its own lake).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest

from currents_relay.catalogue import lookup, schema_for
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from tests.conftest import HOUR, avro_samples, http_samples, load

pytestmark = pytest.mark.samples
DATE = "2026-11-01-10"


def land_avro(sample: Path, root: Path) -> Path:
    folder = (
        root
        / "dataexport.prod-01.S3.integration.x"
        / f"event_type={sample.stem}"
        / f"date={DATE}"
        / "1"
        / "z"
    )
    folder.mkdir(parents=True)
    shutil.copyfile(sample, folder / "part.avro")  # a copy: symlinks are never followed
    return root


def land_http(sample: Path, root: Path) -> Path:
    folder = root / "http" / f"date={DATE}"
    folder.mkdir(parents=True)
    (folder / "batch.json").write_text(json.dumps({"events": [load(sample)]}))
    return root


def ingest_one(landing: Path, lake: Path) -> tuple[dict, dict]:
    report = process_hour(str(landing), str(lake), parse_hour(HOUR))
    assert report["events"] == {"read": 1, "duplicates": 0, "quarantined": 0, "written": 1}, report
    (event_type,) = report["by_event_type"]
    path = next((lake / "events" / f"event_type={event_type}").rglob("*.parquet"))
    table = pq.read_table(path)
    assert table.schema.remove_metadata().equals(schema_for(event_type).remove_metadata())
    return report, table.to_pylist()[0]


@pytest.mark.parametrize("sample", avro_samples(), ids=lambda p: p.stem)
def test_every_avro_sample_is_written_typed(samples, sample, tmp_path):
    _, row = ingest_one(land_avro(sample, tmp_path / "landing"), tmp_path / "lake")
    assert row["event_type"] == sample.stem and row["id"] and isinstance(row["time"], int)
    assert row["extra"] is None  # the catalogue knows every field of every published schema


@pytest.mark.parametrize("sample", http_samples(), ids=lambda p: p.stem)
def test_every_http_sample_is_written_typed(samples, sample, tmp_path):
    event = load(sample)
    _, row = ingest_one(land_http(sample, tmp_path / "landing"), tmp_path / "lake")
    assert row["event_type"] == event["event_type"] and row["extra"] is None


def pairs() -> list[tuple[Path, Path]]:
    avro = {p.stem: p for p in avro_samples()}
    return [
        (avro[load(h)["event_type"]], h) for h in http_samples() if load(h)["event_type"] in avro
    ]


@pytest.mark.parametrize(("avro", "http"), pairs(), ids=lambda p: p.stem)
def test_avro_and_http_forms_agree_on_shared_fields(samples, avro, http, tmp_path):
    _, from_avro = ingest_one(land_avro(avro, tmp_path / "a"), tmp_path / "lake-a")
    _, from_http = ingest_one(land_http(http, tmp_path / "h"), tmp_path / "lake-h")
    shared = [
        name
        for name in lookup(from_avro["event_type"]).fields
        if from_avro.get(name) is not None and from_http.get(name) is not None
    ]
    assert {"id", "time"} <= set(shared)
    different = {
        n: (from_avro[n], from_http[n])
        for n in shared
        if n != "properties" and from_avro[n] != from_http[n]
    }
    assert different == {}  # exact: an Avro float is the decimal it was written from
    if "properties" in shared:
        assert json.loads(from_avro["properties"]) == json.loads(from_http["properties"])


def test_catalogue_covers_every_sample_type(samples):
    types = {p.stem for p in avro_samples()} | {load(p)["event_type"] for p in http_samples()}
    assert len(types) == 97
    assert all(lookup(t).known for t in types)


@pytest.mark.parametrize(
    ("written", "read"), [(3.14, 3.14), (19.99, 19.99), (0.1, 0.1), (1e-7, 1e-7), (2.5, 2.5)]
)
def test_an_avro_float_is_the_shortest_decimal_of_its_float32(written, read, tmp_path):
    schema = {
        "type": "record",
        "name": "users.behaviors.Purchase",
        "namespace": "dataexport.S3.inner",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "time", "type": "int"},
            {"name": "price", "type": ["null", "float"]},
        ],
    }
    folder = tmp_path / "landing" / "event_type=users.behaviors.Purchase" / f"date={DATE}"
    folder.mkdir(parents=True)
    with (folder / "part.avro").open("wb") as out:
        fastavro.writer(out, schema, [{"id": "p1", "time": 1, "price": written}])
    _, row = ingest_one(tmp_path / "landing", tmp_path / "lake")
    assert row["price"] == read and repr(row["price"]) == repr(read)
