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

import currents_relay.ingest as ingest_module
from currents_relay.delivery import engine as engine_module
from currents_relay.delivery import http_wire, json_template
from currents_relay.delivery.batching import Encoded, Pieces
from currents_relay.delivery.engine import Delivery, Selection
from currents_relay.delivery.partner import Endpoint
from currents_relay.generator import generate_hour
from currents_relay.hours import parse_hour
from currents_relay.ingest import HourIngest, IngestOptions, process_hour
from currents_relay.landing import read_bytes
from currents_relay.partners.custom_http import CustomHttp
from currents_relay.sandbox import Sandbox
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

    monkeypatch.setattr(ingest_module, "read_bytes", counting_read)
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
    monkeypatch.setattr(engine_module, "FIRST_CHUNK_ROWS", 100)
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
    assert held[:2] == [100, 200] and held[2] <= 400  # the first chunks small: a request early
    assert opened and set(opened.values()) == {1}
    ledger = lake / "deliveries" / "custom_http" / f"hour={HOUR}"
    assert counts["requests"] > 100
    assert len(list(ledger.glob("ack-*"))) == 1  # one journal for the run, folded to Parquet


def test_push_writes_each_chunk_in_one_pass_and_no_object_per_event(hours, tmp_path, monkeypatch):
    """Every event is written once, by the compiled kernel (a chunk's rows cut into at most
    one part per writer) or by the row path; a body is sent as the chunks' buffers: no event
    ever becomes a Python object of its own on the way out, but the ~1% with fields the
    catalogue does not know (read back and written again with them)."""
    lake = tmp_path / "lake"
    process_hour(str(hours[4_000]), str(lake), parse_hour(HOUR))
    monkeypatch.setattr(engine_module, "ENCODE_CHUNK_ROWS", 700)
    monkeypatch.setattr(json_template, "PART_ROWS", 20)  # chunks written on two threads
    monkeypatch.setattr(json_template, "WRITERS", 2)
    chunks, kernel_calls, kernel_rows, row_path, per_event = [0], [0], [0], [0], [0]
    later_parts, unknown_fields, inside = [0], [0], [False]
    real_chunk, real_kernel = Delivery._select_chunk, json_template.kernel.write_rows
    real_rows, real_item = Delivery._rows_written, Encoded.__getitem__
    real_extra = http_wire._with_extra
    joined = [0]
    real_join = Pieces.__bytes__

    def counting_join(self):
        joined[0] += 1
        return real_join(self)

    def counting_chunk(self, event_type, frame):
        chunks[0] += 1
        return real_chunk(self, event_type, frame)

    def counting_kernel(*args):
        kernel_calls[0] += 1
        later_parts[0] += args[5] > 0  # `first`: a part that starts inside its chunk
        written = real_kernel(*args)
        kernel_rows[0] += written
        return written

    def counting_rows(self, frame):
        row_path[0] += frame.height
        return real_rows(self, frame)

    def counting_item(self, index):
        per_event[0] += not inside[0]
        return real_item(self, index)

    def counting_extra(frame):
        unknown_fields[0] += frame.height
        inside[0] = True
        try:
            return real_extra(frame)
        finally:
            inside[0] = False

    monkeypatch.setattr(Delivery, "_select_chunk", counting_chunk)
    monkeypatch.setattr(json_template.kernel, "write_rows", counting_kernel)
    monkeypatch.setattr(Delivery, "_rows_written", counting_rows)
    monkeypatch.setattr(Encoded, "__getitem__", counting_item)
    monkeypatch.setattr(http_wire, "_with_extra", counting_extra)
    monkeypatch.setattr(Pieces, "__bytes__", counting_join)
    with Sandbox(names=["custom_http"]) as sandbox:
        sim = sandbox.sims["custom_http"]
        partner = CustomHttp(Endpoint(sandbox.urls()["custom_http"], password=sim.secret))
        counts = Delivery(str(lake), HOUR, partner, Selection()).run()
    assert counts["delivered"] == counts["selected"] > 2_000
    assert sim.accepted_events == counts["delivered"] and sim.duplicates == 0
    assert kernel_rows[0] + row_path[0] == counts["delivered"]  # each event written once
    assert kernel_rows[0] > 0.9 * counts["delivered"]
    assert later_parts[0] > 0 and kernel_calls[0] <= 2 * chunks[0]  # two parts a chunk at most
    assert per_event[0] == 0 and 0 < unknown_fields[0] < 0.05 * counts["delivered"]
    assert joined[0] == 0  # bodies go to the socket as their chunks' buffers, never joined
