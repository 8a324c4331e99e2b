"""The ledger keeps every acknowledgement through kills, on local disks and object stores."""

from __future__ import annotations

import subprocess
import sys

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from currents_relay.delivery import arrays
from currents_relay.delivery import ledger as ledger_module
from currents_relay.delivery.engine import Delivery, Selection
from currents_relay.delivery.ledger import (
    ACK_SCHEMA,
    JOURNAL_SCHEMA,
    Acknowledgement,
    Ledger,
    ParquetCopy,
    journal_batches,
)
from currents_relay.lake import Lake
from currents_relay.partners.custom_http import CustomHttp
from tests.delivery.conftest import endpoint

HOUR = "2026-11-01T10"
OPEN = "users.messages.email.Open"


def batch(n: int, start: int = 0) -> list[tuple[str, list[str]]]:
    return [(OPEN, [f"id-{i}" for i in range(start, start + n)])]


def acknowledge(ledger: Ledger, runs, batch_id: str, status: int) -> None:
    ledger.record(Acknowledgement.of(runs, batch_id), status)


def read_journal(fs, path: str) -> pa.Table:
    return pa.Table.from_batches(list(journal_batches(fs, path)), schema=ACK_SCHEMA)


def known(lake_url: str, destination: str = "d") -> int:
    ledger = Ledger(Lake(lake_url), destination, HOUR)
    return sum(len(keys) for keys in ledger.acknowledged.values())


def test_local_run_appends_to_one_journal_then_folds_it_into_one_parquet(tmp_path, monkeypatch):
    monkeypatch.setattr(ParquetCopy, "ROWS", 15)  # the copy written in row groups on the way
    ledger = Ledger(Lake(str(tmp_path)), "d", HOUR)
    for b in range(3):
        acknowledge(ledger, batch(10, 10 * b), f"b{b}", 200)
    folder = tmp_path / "deliveries" / "d" / f"hour={HOUR}"
    assert [p.suffix for p in folder.glob("ack-*")] == [".arrows"]
    assert known(str(tmp_path)) == 30  # readable while the run still appends
    ledger.close()
    assert [p.suffix for p in folder.glob("ack-*")] == [".parquet"]
    assert known(str(tmp_path)) == 30
    folded = pq.ParquetFile(next(folder.glob("ack-*.parquet")))
    assert folded.metadata.num_row_groups == 2 and not list(folder.glob(".*.tmp"))
    table = folded.read()
    assert table.schema == ACK_SCHEMA  # written from the journal's dictionaries, read as strings
    assert folded.metadata.row_group(0).column(1).encodings[-1] == "DELTA_LENGTH_BYTE_ARRAY"
    assert table.column("id").to_pylist() == [f"id-{i}" for i in range(30)]
    assert table.column("batch_id").to_pylist() == [f"b{i // 10}" for i in range(30)]


def test_a_torn_last_record_loses_only_that_record(tmp_path):
    ledger = Ledger(Lake(str(tmp_path)), "d", HOUR)
    acknowledge(ledger, batch(10), "b0", 200)
    acknowledge(ledger, batch(10, 10), "b1", 200)
    journal = next((tmp_path / "deliveries" / "d" / f"hour={HOUR}").glob("*.arrows"))
    data = journal.read_bytes()
    journal.write_bytes(data[:-7])  # the process died inside the second write
    assert read_journal(fsspec.filesystem("file"), str(journal)).num_rows == 10
    assert known(str(tmp_path)) == 10


def test_journals_hold_labels_as_dictionaries_and_read_as_the_ledger_schema(tmp_path):
    ledger = Ledger(Lake(str(tmp_path)), "d", HOUR)
    acknowledge(ledger, [(OPEN, ["a", "b"]), ("t", []), ("u", ["c"]), (OPEN, ["d"])], "b0", 200)
    folder = tmp_path / "deliveries" / "d" / f"hour={HOUR}"
    journal = next(folder.glob("*.arrows"))
    with pa.ipc.open_stream(journal) as stream:
        assert stream.schema == JOURNAL_SCHEMA
    read = read_journal(fsspec.filesystem("file"), str(journal))
    assert read.schema == ACK_SCHEMA
    assert read.column("event_type").to_pylist() == [OPEN, OPEN, "u", OPEN]
    assert read.column("batch_id").to_pylist() == ["b0"] * 4
    # A journal an earlier version wrote (labels as plain strings) reads the same.
    earlier = folder / "ack-run-earlier.arrows"
    with pa.OSFile(str(earlier), "wb") as sink, pa.ipc.new_stream(sink, ACK_SCHEMA) as writer:
        writer.write_table(read.slice(0, 2).replace_schema_metadata())
    assert read_journal(fsspec.filesystem("file"), str(earlier)).equals(read.slice(0, 2))
    ledger.close()
    assert pq.read_schema(next(folder.glob("ack-*.parquet"))) == ACK_SCHEMA


def test_object_stores_get_one_atomic_object_per_acknowledgement(s3_lake):
    lake = Lake(s3_lake)
    ledger = Ledger(lake, "d", HOUR)
    acknowledge(ledger, batch(10), "b0", 200)
    acknowledge(ledger, batch(5, 10), "b1", 200)
    ledger.close()
    found = lake.fs.find(lake.root)
    names = [p.rsplit("/", 1)[1] for p in found]
    assert len(names) == 2 and all(n.startswith("ack-b") for n in names)
    assert known(s3_lake) == 15
    with lake.fs.open(found[0], "rb") as handle:
        assert pq.read_schema(handle) == ACK_SCHEMA


def test_a_push_from_an_object_store_lake_delivers_every_event_once(
    ingested_lake, sandbox, s3_lake
):
    url = s3_lake
    lake = Lake(url)
    for path in ingested_lake.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            lake.fs.pipe_file(lake.path(str(path.relative_to(ingested_lake))), path.read_bytes())
    partner = CustomHttp(endpoint(sandbox, "custom_http"))
    counts = Delivery(url, HOUR, partner, Selection()).run()
    assert (
        counts["delivered"]
        == counts["selected"]
        == sandbox.sims["custom_http"].stats()["unique_events"]
    )
    assert counts["selected"] > 1_000 and known(url, "custom_http") == counts["selected"]
    again = Delivery(url, HOUR, partner, Selection()).run()  # nothing is sent twice
    assert again["requests"] == 0 and again["delivered"] == counts["delivered"]


def test_batching_recording_and_reading_acknowledgements_never_import_pandas(tmp_path):
    """pyarrow's `array`/`scalar` import pandas (0.2 s) on first use: the push avoids them."""
    code = f"""
import sys
from currents_relay.delivery.batching import Chunk, Limits, batch_id, cut_batches
from currents_relay.delivery.ledger import Acknowledgement, Ledger
from currents_relay.lake import Lake
def acknowledge(ledger, runs, batch_id, status):
    ledger.record(Acknowledgement.of(runs, batch_id), status)
ledger = Ledger(Lake({str(tmp_path)!r}), "d", "{HOUR}")
acknowledge(ledger, [("{OPEN}", ["a", "é"]), ("t", []), ("u", ["c"])], "b1", 200)
chunks = [Chunk.of("t", ["x", "y", "z"], [b"{{}}", b"[1]", b"2" * 50], "r")]
too_large = []
for batch in cut_batches(chunks, Limits(2, 40), too_large):
    assert batch.body(b"[", b"]") in (b"[{{}},[1]]",)
    acknowledge(ledger, batch.runs(), batch_id(batch.runs()), 200)
assert [c.ids.to_pylist() for c in too_large] == [["z"]]
ledger.close()
again = Ledger(Lake({str(tmp_path)!r}), "d", "{HOUR}")
assert sum(len(keys) for keys in again.acknowledged.values()) == 5
assert "pandas" not in sys.modules, "the ledger imported pandas"
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    table = pq.read_table(next((tmp_path / "deliveries" / "d").rglob("ack-*.parquet")))
    assert table.column("id").to_pylist() == ["a", "é", "c", "x", "y"]
    assert table.column("event_type").to_pylist() == [OPEN, OPEN, "u", "t", "t"]
    assert set(table.column("status").to_pylist()) == {200}


def test_ids_are_hashed_only_where_the_ledger_holds_their_event_type(tmp_path, monkeypatch):
    hashed: list[int] = []
    real_keys_of = ledger_module.keys_of
    monkeypatch.setattr(
        ledger_module, "keys_of", lambda ids: hashed.append(len(ids)) or real_keys_of(ids)
    )
    ids = pl.Series(["id-0", "id-1", "id-2"])
    first = Ledger(Lake(str(tmp_path)), "d", HOUR)
    recorded = first.recorded(OPEN, ids)
    assert not any(mask.any() for mask in recorded.values())
    assert hashed == []  # an hour's first push hashes no id
    acknowledge(first, batch(2), "b0", 200)
    first.close()
    again = Ledger(Lake(str(tmp_path)), "d", HOUR)  # loading it hashes the recorded ids
    hashed.clear()
    recorded = again.recorded(OPEN, ids)
    assert recorded["acknowledged"].tolist() == [True, True, False]
    assert not recorded["dead"].any() and hashed == [3]  # hashed once for every mask
    assert not again.recorded("users.messages.email.Send", ids)["acknowledged"].any()
    assert hashed == [3]


@pytest.mark.parametrize("count", [0, 1, 4, 5, 300])
def test_string_arrays_keep_every_value(count):
    values = [["é", "", "a\x00b", "🎉 x"][i % 4] + str(i) for i in range(count)]
    built = arrays.strings(values)
    assert built.type == pa.string() and built.to_pylist() == values


def test_acknowledgements_of_the_earlier_layout_are_still_honoured(tmp_path):
    """Ledger files written before `acknowledgement` and `sent_as` existed: taken as
    confirmed, sent once."""
    folder = tmp_path / "deliveries" / "d" / f"hour={HOUR}"
    folder.mkdir(parents=True)
    old = pa.table(
        {
            "event_type": [OPEN, OPEN],
            "id": ["a", "b"],
            "batch_id": ["b0", "b0"],
            "status": pa.array([200, 200], pa.int32()),
            "acknowledged_at": pa.array([1, 2], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(old, folder / "ack-b0.parquet")
    ledger = Ledger(Lake(str(tmp_path)), "d", HOUR)
    recorded = ledger.recorded(OPEN, pl.Series(["a", "b", "c"]))
    assert recorded["acknowledged"].tolist() == [True, True, False]
    assert not recorded["dead"].any()
    assert not recorded["after_timeout"].any() and not recorded["resend"].any()
