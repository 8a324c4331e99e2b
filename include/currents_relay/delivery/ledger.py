"""The delivery ledger and the dead letters of one destination and hour, in the lake.

| path | holds |
| --- | --- |
| `deliveries/<destination>/hour=<h>/ack-<batch>.parquet` | ids the partner acknowledged |
| `deliveries/<destination>/hour=<h>/ack-run-<id>.arrows` | the same, journal of a run on a local disk |
| `dead_letter/<destination>/hour=<h>/dl-<batch>.parquet` | events refused for good: status, reason, payload |
| `deliveries/<destination>/hour=<h>/_runs/<n>.json` | what each push attempt did (requests, retries) |

Each record also says how the partner acknowledged it (`acknowledgement`: "confirmed", or
"accepted" where the partner checks later: Treasure Data, mParticle) and how it was sent
(`sent_as`: "once"; "after_timeout", a request resent after one that may have arrived;
"resend", sent again on purpose by `replay --resend-acknowledged`).

Every acknowledgement is recorded right after its 2xx, before the next request, so a crash
loses at most the one batch in flight. On object stores each one is its own small Parquet
object (written under a temporary name, then renamed: atomic anywhere). On a local disk a
run appends them to one Arrow IPC stream instead (one `write` per 2xx, not a file: 30x
cheaper); a run killed mid-append leaves a readable prefix. The same records are copied into
a Parquet file as they come (`ParquetCopy`), which takes the journal's place when the run ends.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from currents_relay.delivery import arrays
from currents_relay.keyset import KeySet, keys_of
from currents_relay.lake import Lake
from currents_relay.workers import Senders

ACK_SCHEMA = pa.schema(
    [
        ("event_type", pa.string()),
        ("id", pa.string()),
        ("batch_id", pa.string()),
        ("status", pa.int32()),
        ("acknowledged_at", pa.timestamp("us", tz="UTC")),
        ("acknowledgement", pa.string()),  # "confirmed" or "accepted"
        ("sent_as", pa.string()),  # "once", "after_timeout" or "resend"
    ]
)
SENT_AS = ("once", "after_timeout", "resend")
FLAGS = ("after_timeout", "resend")  # the `sent_as` values selection keeps keys of
# A journal holds event types and batch ids as dictionaries (a batch's ~1,400 records name
# one or two event types and one batch: ~60 KB written per batch instead of ~150 KB); it is
# read, and copied into Parquet, as `ACK_SCHEMA`.
LABEL = pa.dictionary(pa.int32(), pa.string())
JOURNAL_SCHEMA = pa.schema(
    [
        field.with_type(LABEL)
        if field.name in ("event_type", "batch_id", "acknowledgement", "sent_as")
        else field
        for field in ACK_SCHEMA
    ]
)
DEAD_SCHEMA = pa.schema(
    [
        ("event_type", pa.string()),
        ("id", pa.string()),
        ("batch_id", pa.string()),
        ("status", pa.int32()),
        ("reason", pa.string()),
        ("payload", pa.string()),
        ("dead_lettered_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Acknowledgement:
    """The columns a batch's acknowledgement records that do not depend on the answer, built
    before the batch is sent: recording the answer then adds only its status and time."""

    batch: str
    event_types: pa.Array
    ids: pa.Array
    batch_ids: pa.Array

    @classmethod
    def of(
        cls, runs: Sequence[tuple[str, pa.StringArray | Sequence[str]]], batch: str
    ) -> Acknowledgement:
        """The records of (event_type, ids) runs sent as the batch `batch`."""
        runs = [(t, run_ids) for t, run_ids in runs if len(run_ids)]
        ids = [
            run_ids if isinstance(run_ids, pa.Array) else arrays.strings(run_ids)
            for _, run_ids in runs
        ]
        names = [t for t, _ in runs]  # the same event type twice is two runs: kept as it comes
        sizes = [len(run_ids) for run_ids in ids]
        zeros = np.zeros(sum(sizes), dtype=np.int32)  # every record's label is the first
        if len(runs) == 1:  # the usual batch: one run, its ids as they are
            return cls(batch, _labels(zeros, names), ids[0], _labels(zeros, [batch]))
        which = np.repeat(np.arange(len(runs), dtype=np.int32), sizes)
        joined = pa.concat_arrays(ids) if ids else arrays.strings([])
        return cls(batch, _labels(which, names), joined, _labels(zeros, [batch]))


def _labels(indices: np.ndarray, names: list[str]) -> pa.Array:
    """A dictionary array: `names[i]` for each i of `indices`."""
    return pa.DictionaryArray.from_buffers(
        LABEL, len(indices), [None, pa.py_buffer(indices)], dictionary=arrays.strings(names)
    )


class Journal:
    """An append-only Arrow IPC stream on a local disk: one `write` per record, no new file;
    its records also copied into Parquet as they come (`ParquetCopy`), which takes the
    stream's place when it is closed."""

    BUFFER = 1 << 20  # bytes: more than a record (~60 KB for a batch of ~1,400 events)

    def __init__(self, fs: Any, folder: str) -> None:
        self.fs = fs
        self.path = f"{folder}/ack-run-{uuid.uuid4().hex}.arrows"
        # Arrow's own buffered file, not Python's: a record's ~15 writes stay in Arrow (no
        # Python call each) and its flush is one `write`.
        self._file = pa.output_stream(self.path, buffer_size=self.BUFFER)
        self._writer = pa.ipc.new_stream(self._file, JOURNAL_SCHEMA)
        self._file.flush()
        self._copy = ParquetCopy(fs, folder)

    def append(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self._file.flush()  # in the OS's hands: survives the process being killed
        self._copy.add(table)

    def close(self) -> None:
        """Finish the Parquet copy and put it in the stream's place (the stream stays
        readable if the run never gets here)."""
        self._writer.close()
        self._file.close()
        self._copy.finish(self.path.removesuffix(".arrows") + ".parquet")
        self.fs.rm(self.path)


class ParquetCopy:
    """A journal's records copied into one Parquet file as they are appended (row groups of
    `ROWS`, encoded on a thread of their own, under a temporary name), so a run's end only
    writes the footer and renames it: no second pass over the journal."""

    ROWS = 65_536
    # Ledger files are read whole: no statistics; zstd's fastest level (smaller than
    # snappy's, as fast); dictionaries only where values repeat (ids never do), written as
    # the journal holds them (no cast), read back as `ACK_SCHEMA` (no Arrow schema stored);
    # ids as DELTA_LENGTH_BYTE_ARRAY (their bytes back to back, lengths apart: zstd packs
    # them smaller and faster).
    OPTIONS: ClassVar[dict[str, Any]] = {
        "compression": "zstd",
        "compression_level": 1,
        "write_statistics": False,
        "use_dictionary": ["event_type", "batch_id", "acknowledgement", "sent_as"],
        "column_encoding": {"id": "DELTA_LENGTH_BYTE_ARRAY"},
        "store_schema": False,
    }

    def __init__(self, fs: Any, folder: str) -> None:
        self.fs = fs
        self.temporary = f"{folder}/.{uuid.uuid4().hex}.tmp"
        self._sink = fs.open(self.temporary, "wb")
        self._writer = pq.ParquetWriter(self._sink, JOURNAL_SCHEMA, **self.OPTIONS)
        self._writes = Senders(self._write, threads=1, depth=2, name="ledger-copy")
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self.ROWS:
            self._flush()

    def _write(self, tables: list[pa.Table]) -> None:
        # One row group; each record's dictionaries (its event types, its batch id) made one
        # first, so the column is written with one dictionary, not one per record.
        self._writer.write_table(pa.concat_tables(tables).unify_dictionaries())

    def _flush(self) -> None:
        if self._pending:  # joined on the copying thread, not on the caller's (the sender's)
            self._writes.put(self._pending)
        self._pending, self._rows = [], 0

    def finish(self, target: str) -> None:
        self._flush()
        self._writes.finish()
        self._writer.close()
        self._sink.close()
        self.fs.mv(self.temporary, target)


def journal_batches(fs: Any, path: str) -> Iterator[pa.RecordBatch]:
    """The whole records of a journal; a run killed mid-append leaves a torn last record."""
    # A torn tail ends the stream: everything before it was acknowledged and stays.
    with fs.open(path, "rb") as handle, contextlib.suppress(pa.ArrowInvalid, OSError, EOFError):
        for batch in pa.ipc.open_stream(handle):
            yield _complete(batch).cast(ACK_SCHEMA)


def _complete(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A record batch of a ledger written before `acknowledgement`/`sent_as` existed, with
    them (a 2xx then was taken as confirmed, sent once)."""
    for name, default in (("acknowledgement", "confirmed"), ("sent_as", "once")):
        if name not in batch.schema.names:
            batch = batch.append_column(name, arrays.strings([default] * batch.num_rows))
    return batch


def ledger_batches(fs: Any, path: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A ledger file (Parquet or journal), a slice at a time: never the whole hour at once."""
    if path.endswith(".arrows"):
        for batch in journal_batches(fs, path):
            yield batch.select(columns)
        return
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=65_536, columns=present):
            yield _complete(batch).select(columns) if present != columns else batch


class Ledger:
    """Acknowledged and dead-lettered events of one destination and hour."""

    def __init__(self, lake: Lake, destination: str, hour: str) -> None:
        self.lake = lake
        self.destination = destination
        self.hour = hour
        self.ack_dir = lake.path(f"deliveries/{destination}/hour={hour}")
        self.dead_dir = lake.path(f"dead_letter/{destination}/hour={hour}")
        self.flagged: dict[str, dict[str, KeySet]] = {flag: {} for flag in FLAGS}
        self.acknowledged = self._keys(self.ack_dir, "ack-")
        self.dead = self._keys(self.dead_dir, "dl-")
        self._journal: Journal | None = None
        self._appending = threading.Lock()

    def _keys(self, folder: str, prefix: str) -> dict[str, KeySet]:
        """Event type -> keys of the ids recorded in the folder's files (of acknowledgements:
        also `self.flagged`, keys per `sent_as` flag)."""
        fs = self.lake.fs
        keys: dict[str, KeySet] = {}
        if not fs.exists(folder):
            return keys
        paths = fs.glob(f"{folder}/{prefix}*.parquet") + fs.glob(f"{folder}/{prefix}*.arrows")
        columns = ["event_type", "id"] + (["sent_as"] if prefix == "ack-" else [])
        for path in paths:
            for batch in ledger_batches(fs, path, columns):
                recorded = pl.from_arrow(batch)
                assert isinstance(recorded, pl.DataFrame)
                for (event_type,), ids in recorded.group_by("event_type", maintain_order=True):
                    keys.setdefault(str(event_type), KeySet()).add(keys_of(ids["id"]))
                    if "sent_as" in ids.columns:
                        self._flag(str(event_type), ids)
        return keys

    def _flag(self, event_type: str, records: pl.DataFrame) -> None:
        for flag in FLAGS:
            flagged = records.filter(pl.col("sent_as") == flag)["id"]
            if len(flagged):
                into = self.flagged[flag].setdefault(event_type, KeySet())
                into.add(keys_of(flagged))

    def recorded(self, event_type: str, ids: pl.Series) -> dict[str, np.ndarray]:
        """Which of `ids` (events of `event_type`) earlier runs recorded, as boolean masks:
        `acknowledged`, `dead` (refused for good) and one per `sent_as` flag (`FLAGS`). The
        ids are hashed only where the ledger holds events of that type (an hour's first push
        hashes none)."""
        sets = {"acknowledged": self.acknowledged, "dead": self.dead, **self.flagged}
        held = {name: keys for name, of in sets.items() if (keys := of.get(event_type))}
        masks = {name: np.zeros(len(ids), dtype=bool) for name in sets}
        if held:
            hashed = keys_of(ids)
            masks |= {name: keys.contains(hashed) for name, keys in held.items()}
        return masks

    def _write(self, folder: str, name: str, table: pa.Table) -> None:
        """One small Parquet object, written whole (see `Lake.write_bytes`)."""
        buffer = io.BytesIO()
        # Ledger files are small and read whole: no compression, no statistics.
        pq.write_table(table, buffer, compression="none", write_statistics=False)
        self.lake.write_bytes(self.lake.relative(f"{folder}/{name}"), buffer.getvalue())

    def record(  # safe to call from several threads
        self,
        prepared: Acknowledgement,
        status: int,
        acknowledgement: str = "confirmed",
        sent_as: str | np.ndarray = "once",
    ) -> None:
        """Record a 2xx for a batch's records, prepared before it was sent: call it before
        sending anything else (see the module's notes). `sent_as` is one value for every
        record, or each record's index into `SENT_AS`."""
        n = len(prepared.ids)
        zeros = np.zeros(n, dtype=np.int32)
        if isinstance(sent_as, str):
            sent_as_labels = _labels(zeros, [sent_as])
        else:
            sent_as_labels = _labels(sent_as.astype(np.int32), list(SENT_AS))
        now = time.time_ns() // 1000  # µs as an integer: no datetime object
        table = pa.Table.from_arrays(
            [
                prepared.event_types,
                prepared.ids,
                prepared.batch_ids,
                arrays.repeated(ACK_SCHEMA.field("status").type, np.int32(status), n),
                arrays.repeated(ACK_SCHEMA.field("acknowledged_at").type, np.int64(now), n),
                _labels(zeros, [acknowledgement]),
                sent_as_labels,
            ],
            schema=JOURNAL_SCHEMA,
        )
        # The in-memory sets only serve selection, which is done before a type is sent:
        # what this run acknowledges is never selected again in this run.
        if self.lake.local:  # one journal, appended one record at a time
            with self._appending:
                if self._journal is None:
                    self.lake.fs.makedirs(self.ack_dir, exist_ok=True)
                    self._journal = Journal(self.lake.fs, self.ack_dir)
                self._journal.append(table)
        else:  # an object of its own: senders write theirs side by side
            name = f"ack-{prepared.batch}-{uuid.uuid4().hex[:8]}.parquet"
            self._write(self.ack_dir, name, table.cast(ACK_SCHEMA))

    def close(self) -> None:
        """End this run's journal: its Parquet copy takes its place."""
        with self._appending:
            journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    def dead_letter(
        self, events: list[tuple[str, str, str]], batch: str, status: int, reason: str
    ) -> None:
        """Record events refused for good; `events` holds (event_type, id, payload)."""
        now = datetime.now(UTC)
        table = pa.table(
            {
                "event_type": [e[0] for e in events],
                "id": [e[1] for e in events],
                "batch_id": [batch] * len(events),
                "status": [status] * len(events),
                "reason": [reason] * len(events),
                "payload": [e[2] for e in events],
                "dead_lettered_at": [now] * len(events),
            },
            schema=DEAD_SCHEMA,
        )
        self._write(self.dead_dir, f"dl-{batch}-{uuid.uuid4().hex[:8]}.parquet", table)

    def record_run(self, stats: dict[str, Any]) -> None:
        """Keep what one push attempt did (requests, retries, how it ended)."""
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}.json"
        self.lake.write_json(f"deliveries/{self.destination}/hour={self.hour}/_runs/{name}", stats)

    def runs(self) -> list[dict[str, Any]]:
        folder = f"{self.ack_dir}/_runs"
        if not self.lake.fs.exists(folder):
            return []
        prefix = len(self.lake.root) + 1
        return [
            self.lake.read_json(p[prefix:]) for p in sorted(self.lake.fs.glob(f"{folder}/*.json"))
        ]
