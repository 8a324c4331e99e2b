"""The Parquet lake: layout, atomic hour writes, manifests and reports.

| path | holds |
| --- | --- |
| `events/event_type=<t>/hour=<h>/part-00000.parquet` | valid, deduplicated events (zstd) |
| `quarantine/hour=<h>/part-00000.parquet` | rejected rows and unreadable files, with reasons |
| `manifests/hour=<h>.json` | files consumed (uri, size, sha256), catalogue version, counts |
| `validation/hour=<h>.json` | suite results: counts and row positions, never values |
| `reports/hour=<h>.json` | the run's reconciled counts (written by the `report` step) |

An hour is written into `_staging/<token>/` first; `commit()` then replaces the hour's
partitions (deleting what an earlier run of the hour left) and moves the new files in, so a
re-run of an hour replaces it exactly. The manifest is written last: an hour without one
was never completed.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from currents_relay.landing import filesystem

COMPRESSION = "zstd"
QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_offset", pa.int64()),  # null: the whole file is quarantined
        ("event_type", pa.string()),
        ("id", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("payload", pa.string()),  # the raw event / record as JSON (null for a whole file)
        ("error", pa.string()),  # the reader's error for an unreadable file
    ]
)


def events_dir(event_type: str, hour: str) -> str:
    return f"events/event_type={event_type}/hour={hour}"


class Lake:
    """A lake root URL (local path, `file://`, `s3://`, `gs://`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = filesystem(url)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def write_json(self, relative: str, data: Any) -> None:
        """Write JSON atomically (temporary name, then rename)."""
        target = self.path(relative)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        with self.fs.open(temporary, "wb") as handle:  # orjson: ~10x json.dump (reports are big)
            handle.write(text + b"\n")
        self.fs.mv(temporary, target)

    def read_json(self, relative: str) -> Any | None:
        path = self.path(relative)
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r") as handle:
            return json.load(handle)

    def hour_event_dirs(self, hour: str) -> list[str]:
        return sorted(self.fs.glob(self.path(f"events/event_type=*/hour={hour}")))


class HourWriter:
    """Streams one hour's tables into staging Parquet files, then commits them at once.

    Tables are encoded and compressed by a thread of their own (Arrow releases the GIL while
    it writes), so the next files are parsed meanwhile; at most `QUEUED` tables wait for it,
    in the order they came, and its errors are raised by the next call."""

    QUEUED = 2

    def __init__(self, lake: Lake, hour: str) -> None:
        self.lake = lake
        self.hour = hour
        self.staging = lake.path(f"_staging/hour={hour}-{uuid.uuid4().hex[:12]}")
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._sinks: list[Any] = []
        self.rows: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, str, pa.Table] | None] = queue.Queue(self.QUEUED)
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None  # started by the first table

    def _writer(self, key: str, relative: str, schema: pa.Schema) -> pq.ParquetWriter:
        if key not in self._writers:
            folder = f"{self.staging}/{relative}"
            self.lake.fs.makedirs(folder, exist_ok=True)
            sink = self.lake.fs.open(f"{folder}/part-00000.parquet", "wb")
            self._sinks.append(sink)
            self._writers[key] = pq.ParquetWriter(sink, schema, compression=COMPRESSION)
        return self._writers[key]

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._failure is None:
                key, relative, table = item
                try:
                    self._writer(key, relative, table.schema).write_table(table)
                except BaseException as error:  # raised by the caller's next call
                    self._failure = error

    def _write(self, key: str, relative: str, table: pa.Table) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="lake-writer", daemon=True)
            self._thread.start()
        self._queue.put((key, relative, table))
        self.rows[key] = self.rows.get(key, 0) + table.num_rows

    def _raise(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _finish(self) -> None:
        """Wait for every queued table to be written; the thread ends."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def write_events(self, event_type: str, table: pa.Table) -> None:
        if table.num_rows:
            self._write(event_type, events_dir(event_type, self.hour), table)

    def write_quarantine(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
            self._write("\0quarantine", f"quarantine/hour={self.hour}", table)

    def _close(self) -> None:
        self._finish()
        for writer in self._writers.values():
            writer.close()
        for sink in self._sinks:
            sink.close()
        self._writers.clear()
        self._sinks.clear()

    def commit(self) -> list[str]:
        """Replace the hour in the lake with what was staged; returns the files written."""
        self._close()
        self._raise()
        fs = self.lake.fs
        old = self.lake.hour_event_dirs(self.hour)
        quarantine = self.lake.path(f"quarantine/hour={self.hour}")
        for folder in [*old, quarantine]:
            if fs.exists(folder):
                fs.rm(folder, recursive=True)
        written = []
        if fs.exists(self.staging):
            for staged in sorted(fs.find(self.staging)):
                relative = staged[len(self.staging) + 1 :]
                target = self.lake.path(relative)
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                fs.mv(staged, target)
                written.append(relative)
            fs.rm(self.staging, recursive=True)
        return written

    def abort(self) -> None:
        self._close()
        if self.lake.fs.exists(self.staging):
            self.lake.fs.rm(self.staging, recursive=True)
