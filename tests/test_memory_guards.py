"""Regression guards on how much of an hour is held at once and how often data is passed over.

They assert algorithmic properties, never wall-clock times or RSS, so they cannot flake: the
ingest reads each landing file once and holds at most one flush of rows whatever the hour's
size; the push holds at most one encoding chunk of rows, opens each lake file once, writes
a chunk in one pass of the compiled kernel and never makes an object per event; a local
ledger is one journal per run, not one file per request. (The figures come from
`make bench`.)
"""

from __future__ import annotations

from collections import Counter

import pytest

import currents_relay.ingest.hour as ingest_module
from currents_relay.delivery import engine as engine_module
from currents_relay.delivery.engine import Delivery, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.hours import parse_hour
from currents_relay.ingest import landing as landing_module
from currents_relay.ingest.hour import HourIngest, IngestOptions, process_hour
from currents_relay.ingest.landing import read_bytes
from currents_relay.partners.custom_http import CustomHttp
from currents_relay.tools.generator import generate_hour
from currents_relay.tools.sandbox import Sandbox
from tests.conftest import HOUR

FLUSH_ROWS = 1_500
HTTP_GROUP = 400
FILE_EVENTS = 500


@pytest.fixture(scope="module")
def hours(tmp_path_factory):
    """Two hours of the same shape, one four times the other."""
    made = {}
    for events in (4_000, 16_000):
        landing = tmp_path_factory.mktemp(f"landing-{events}")
        generate_hour(
            str(landing), parse_hour(HOUR), events=events, seed=5, file_events=FILE_EVENTS
        )
        made[events] = landing
    return made


def held_rows_during_ingest(landing, lake, monkeypatch) -> tuple[int, Counter]:
    """The most rows the ingest held at once, and how often each landing file was read."""
    monkeypatch.setattr(ingest_module, "HTTP_BATCH_EVENTS", HTTP_GROUP)
    reads: Counter = Counter()

    def counting_read(uri: str) -> bytes:
        reads[uri] += 1
        return read_bytes(uri)

    monkeypatch.setattr(landing_module, "read_bytes", counting_read)
    peak = 0
    run = HourIngest(
        str(landing), str(lake), parse_hour(HOUR), IngestOptions(flush_rows=FLUSH_ROWS)
    )
    real_flush = run._flush

    def measuring_flush() -> None:
        nonlocal peak
        peak = max(peak, run._buffered + run._http_pending_events)
        real_flush()

    run._flush = measuring_flush  # type: ignore[method-assign]
    real_buffer = run._buffer

    def measuring_buffer(*args, **kwargs) -> None:
        nonlocal peak
        real_buffer(*args, **kwargs)
        peak = max(peak, run._buffered + run._http_pending_events)

    run._buffer = measuring_buffer  # type: ignore[method-assign]
    report = run.run()
    assert report["events"]["written"] > 0
    return peak, reads


def test_ingest_holds_one_flush_whatever_the_hour_size_and_reads_each_file_once(
    hours, tmp_path, monkeypatch
):
    small_peak, small_reads = held_rows_during_ingest(hours[4_000], tmp_path / "a", monkeypatch)
    big_peak, big_reads = held_rows_during_ingest(hours[16_000], tmp_path / "b", monkeypatch)
    bound = FLUSH_ROWS + FILE_EVENTS + HTTP_GROUP  # one flush, plus the file that tipped it
    assert small_peak <= bound and big_peak <= bound
    assert len(big_reads) > 2 * len(small_reads)  # more than twice the files...
    assert set(small_reads.values()) == {1} and set(big_reads.values()) == {1}  # ...read once


def test_push_holds_one_chunk_and_opens_each_lake_file_once(hours, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    process_hour(str(hours[16_000]), str(lake), parse_hour(HOUR))
    monkeypatch.setattr(engine_module, "ENCODE_CHUNK_ROWS", 700)
    held: list[int] = []
    real_chunk = Delivery._select_chunk

    def measuring_chunk(self, event_type, frame):
        held.append(frame.height)
        return real_chunk(self, event_type, frame)

    monkeypatch.setattr(Delivery, "_select_chunk", measuring_chunk)
    with Sandbox(names=["custom_http"]) as sandbox:
        sim = sandbox.sims["custom_http"]
        partner = CustomHttp(Endpoint(sandbox.urls()["custom_http"], password=sim.secret))
        delivery = Delivery(str(lake), HOUR, partner, Selection())
        opened: Counter = Counter()
        real_open = delivery.lake.fs.open

        def counting_open(path, mode="rb", **kwargs):
            if "/events/" in path and mode == "rb":
                opened[path] += 1
            return real_open(path, mode, **kwargs)

        monkeypatch.setattr(delivery.lake.fs, "open", counting_open)
        counts = delivery.run()
    assert counts["delivered"] == counts["selected"] > 10_000
    assert max(held) <= 700 and sum(held) == counts["selected"]  # anonymous ones filtered out
    assert opened and set(opened.values()) == {1}
    ledger = lake / "deliveries" / "custom_http" / f"hour={HOUR}"
    assert counts["requests"] > 100
    assert len(list(ledger.glob("ack-*"))) == 1  # one journal for the run, folded to Parquet
