"""Versions of an hour, and the commit point that makes one of them live.

A run of `process` writes the hour as a new version, every file under a name that carries
it (`events/event_type=<t>/hour=<h>/part-<version>.parquet`, `quarantine/hour=<h>/
part-<version>.parquet`, `validation/hour=<h>/<version>.json`), straight to its final place:
no rename, so nothing is copied on object storage. Nothing reads those files until the
hour's manifest, `manifests/hour=<h>.json`, names them: writing the manifest is the commit,
one object written whole (a rename on a local disk, one PUT on an object store), on the
condition that it is still the version the run started from (`objects.replace` on its tag).
A reader of the manifest sees the whole old hour or the whole new one, never a mix.

The versions an hour's manifest replaced stay for `grace` seconds after that (a push or a
reader may still be reading them), listed in the manifest's `superseded`; then the next
`process` of the hour, or `currents-relay lake gc`, deletes them. Files of a version no
manifest names (a run killed before its commit) are deleted by the next run that holds the
hour's lease; a run that fails deletes its own at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from currents_relay.environment import env_number
from currents_relay.lake.storage import Lake, json_bytes
from currents_relay.workers import Senders

log = logging.getLogger(__name__)

COMPRESSION = "zstd"
QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_offset", pa.int64()),  # null: the whole file is quarantined
        ("event_type", pa.string()),
        ("id", pa.string()),
        ("reasons", pa.list_(pa.string())),
        # the raw event / record as JSON (null for a whole file), its first 65,536 characters
        ("payload", pa.string()),
        ("error", pa.string()),  # the reader's error for an unreadable file
        ("payload_bytes", pa.int64()),  # the whole payload's size
        ("payload_sha256", pa.string()),  # ... and checksum
    ]
)
LEGACY_VERSION = "00000"  # files an unversioned lake wrote (`part-00000.parquet`)
_VERSIONED = re.compile(r"(?:part-)?([0-9A-Za-z]+(?:-[0-9a-f]+)?)\.(?:parquet|json)$")


def grace_seconds() -> float:
    """How long a replaced version stays readable: `CURRENTS_RELAY_GRACE_SECONDS` (one day)."""
    return env_number("CURRENTS_RELAY_GRACE_SECONDS", 86400.0)


def manifest_path(hour: str) -> str:
    return f"manifests/hour={hour}.json"


def events_file(event_type: str, hour: str, version: str) -> str:
    return f"events/event_type={event_type}/hour={hour}/part-{version}.parquet"


def new_version() -> str:
    """Sortable by when the run started, unique across runs."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def version_of(relative: str) -> str | None:
    match = _VERSIONED.search(relative.rsplit("/", 1)[-1])
    return match.group(1) if match else None


class CommitConflict(Exception):
    """Another run committed the hour since this one started: this run's version is dropped."""


class NotProcessed(LookupError):
    """The hour has no committed version in the lake."""


@dataclass(frozen=True)
class Committed:
    """One committed version of an hour: what its manifest says, and the manifest's tag."""

    manifest: dict[str, Any]
    tag: str

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", LEGACY_VERSION))

    def event_files(self) -> dict[str, list[str]]:
        """Event type -> the version's Parquet files (relative to the lake), in order."""
        outputs = self.manifest.get("outputs", {})
        if isinstance(outputs, list):  # an unversioned lake's manifest: relative paths
            found: dict[str, list[str]] = {}
            for path in outputs:
                if path.startswith("events/event_type="):
                    event_type = path.split("=", 1)[1].split("/", 1)[0]
                    found.setdefault(event_type, []).append(path)
            return found
        return {t: list(files) for t, files in sorted(outputs.get("events", {}).items())}

    def files(self) -> list[str]:
        """Every file of the version (relative): events, quarantine, validation results."""
        outputs = self.manifest.get("outputs", {})
        validation = outputs.get("validation") if isinstance(outputs, dict) else None
        events = [p for files in self.event_files().values() for p in files]
        return events + self.quarantine_files() + ([validation] if validation else [])

    def quarantine_files(self) -> list[str]:
        outputs = self.manifest.get("outputs", {})
        if isinstance(outputs, list):
            return [p for p in outputs if p.startswith("quarantine/")]
        return list(outputs.get("quarantine", []))


def read_committed(lake: Lake, hour: str) -> Committed | None:
    """The hour's live version (None: never processed)."""
    stored = lake.objects.get(lake.path(manifest_path(hour)))
    return Committed(json.loads(stored.data), stored.tag) if stored else None


def require_committed(lake: Lake, hour: str) -> Committed:
    committed = read_committed(lake, hour)
    if committed is None:
        raise NotProcessed(
            f"hour {hour} was never processed into the lake {lake.url} (no {manifest_path(hour)}):"
            " run `process` for it first"
        )
    return committed


def committed_hours(lake: Lake, first: str = "0000", last: str = "9999") -> list[str]:
    """The hours with a committed version, from `first` to `last` (hour keys, both included),
    found with one listing of the manifests: a range of years costs what the lake holds."""
    hours = [
        relative.removeprefix("manifests/hour=").removesuffix(".json")
        for relative in lake.glob(manifest_path("*"))
    ]
    return [hour for hour in hours if first <= hour <= last]


def live_files(lake: Lake, hour: str, event_type: str | None = None) -> list[str]:
    """URLs of the live Parquet files of an hour's events (or of one event type)."""
    committed = require_committed(lake, hour)
    files = committed.event_files()
    chosen = files.get(event_type, []) if event_type else [p for f in files.values() for p in f]
    return [lake.uri(p) for p in chosen]


class HourWriter:
    """Streams one hour's tables into this run's version's Parquet files; `commit` makes
    the version live.

    Tables are encoded and compressed by a thread of their own (Arrow releases the GIL while
    it writes), so the next files are parsed meanwhile; at most `QUEUED` tables wait for it,
    in the order they came, and its errors are raised by the next call."""

    QUEUED = 2

    def __init__(self, lake: Lake, hour: str) -> None:
        self.lake = lake
        self.hour = hour
        self.version = new_version()
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._sinks: list[Any] = []
        self.rows: dict[str, int] = {}
        self.written: dict[str, str] = {}  # key -> relative path
        self._writes = Senders(self._write_now, threads=1, depth=self.QUEUED, name="lake-writer")

    def _write_now(self, item: tuple[str, str, pa.Table]) -> None:
        key, relative, table = item
        if key not in self._writers:
            path = self.lake.path(relative)
            self.lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.written[key] = relative
            sink = self.lake.fs.open(path, "wb")
            self._sinks.append(sink)
            self._writers[key] = pq.ParquetWriter(sink, table.schema, compression=COMPRESSION)
        self._writers[key].write_table(table)

    def _write(self, key: str, relative: str, table: pa.Table) -> None:
        self._writes.put((key, relative, table))
        self.rows[key] = self.rows.get(key, 0) + table.num_rows

    def write_events(self, event_type: str, table: pa.Table) -> None:
        if table.num_rows:
            self._write(event_type, events_file(event_type, self.hour, self.version), table)

    def write_quarantine(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
            relative = f"quarantine/hour={self.hour}/part-{self.version}.parquet"
            self._write("\0quarantine", relative, table)

    def close(self) -> dict[str, Any]:
        """Finish every file; returns the version's outputs (for its manifest)."""
        try:
            self._writes.finish()
            for writer in self._writers.values():
                writer.close()
            for sink in self._sinks:
                sink.close()
        finally:
            self._writers.clear()
            self._sinks.clear()
        events = {
            key: [relative] for key, relative in sorted(self.written.items()) if key[0] != "\0"
        }
        quarantine = [r for k, r in self.written.items() if k[0] == "\0"]
        return {"events": events, "quarantine": quarantine}

    def write_validation(self, summary: dict[str, Any]) -> str:
        relative = f"validation/hour={self.hour}/{self.version}.json"
        self.written["\0validation"] = relative
        self.lake.write_bytes(relative, json_bytes(summary))
        return relative

    def commit(
        self,
        manifest: dict[str, Any],
        previous: Committed | None,
        check: Callable[[], None] = lambda: None,
        collected: Collected | None = None,
    ) -> Committed:
        """Make this version live: the manifest written if the hour's live version is still
        `previous`; `check` (the lease's) is called right before. The replaced versions that
        `collected` (this run's `collect_garbage`) deleted leave the list. Raises
        `CommitConflict`."""
        gone = set(collected.versions) if collected else set()
        superseded = [
            entry
            for entry in (previous.manifest.get("superseded", []) if previous else [])
            if entry["version"] not in gone
        ]
        if previous is not None:
            superseded.append(
                {"version": previous.version, "at": time.time(), "files": previous.files()}
            )
        body = manifest | {"version": self.version, "superseded": superseded}
        data = json_bytes(body)
        path = self.lake.path(manifest_path(self.hour))
        check()
        if previous is None:
            tag = self.lake.objects.create(path, data)
        else:
            tag = self.lake.objects.replace(path, data, previous.tag)
        if tag is None:
            raise CommitConflict(
                f"hour {self.hour}: another run committed the hour while this one ran; this "
                f"run's version {self.version} is dropped"
            )
        return Committed(body, tag)

    def abort(self) -> None:
        """Stop writing and delete every file of this version (the live version stays)."""
        self._writes.finish(RuntimeError("aborted"))  # tables still queued are dropped
        for writer in self._writers.values():
            # On a full disk closing fails too; the file is deleted below anyway.
            with contextlib.suppress(Exception):
                writer.close()
        for sink in self._sinks:
            with contextlib.suppress(Exception):
                sink.close()
        self._writers.clear()
        self._sinks.clear()
        for relative in self.written.values():
            with contextlib.suppress(FileNotFoundError):
                self.lake.fs.rm_file(self.lake.path(relative))


def hour_version_files(lake: Lake, hour: str) -> list[str]:
    """Every versioned file of an hour in the lake (relative), committed or not."""
    return (
        lake.glob(f"events/event_type=*/hour={hour}/*.parquet")
        + lake.glob(f"quarantine/hour={hour}/*.parquet")
        + lake.glob(f"validation/hour={hour}/*.json")
    )


@dataclass
class Collected:
    deleted: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)  # replaced versions now gone


def collect_garbage(
    lake: Lake,
    hour: str,
    committed: Committed | None,
    grace: float | None = None,
    orphans: bool = False,
) -> Collected:
    """Delete the hour's files that no reader can need: those of versions replaced more than
    `grace` seconds ago (the manifest lists them: no listing needed), and, with `orphans`,
    every file of a version no manifest names, found by listing the hour's folders (a run
    killed before its commit; its lease, left behind, is the sign). Call it holding the
    hour's `process` lease; it is idempotent."""
    grace = grace_seconds() if grace is None else grace
    now = time.time()
    result = Collected()
    keep = {committed.version} if committed else set()
    for entry in committed.manifest.get("superseded", []) if committed else []:
        if now - float(entry.get("at", 0)) < grace:
            keep.add(entry["version"])
        elif "files" in entry:
            for relative in entry["files"]:
                with contextlib.suppress(FileNotFoundError):
                    lake.fs.rm_file(lake.path(relative))
                    result.deleted.append(relative)
            result.versions.append(entry["version"])
        else:  # an entry without its files: found by listing
            orphans = True
            result.versions.append(entry["version"])
    if orphans:
        for relative in hour_version_files(lake, hour):
            if version_of(relative) not in keep:
                lake.fs.rm_file(lake.path(relative))
                result.deleted.append(relative)
        for staging in lake.glob(f"_staging/hour={hour}-*"):  # an unversioned lake's run
            lake.fs.rm(lake.path(staging), recursive=True)
            result.deleted.append(staging)
    if result.deleted:
        log.info(
            "hour %s: removed %d file(s) of replaced or uncommitted versions",
            hour,
            len(result.deleted),
        )
    return result


def forget_superseded(lake: Lake, hour: str, committed: Committed, collected: Collected) -> None:
    """Drop the versions `collected` deleted from the manifest's `superseded` (a conditional
    write over `committed`: a run that committed meanwhile keeps its own list)."""
    gone = set(collected.versions)
    if not gone:
        return
    kept = [e for e in committed.manifest.get("superseded", []) if e["version"] not in gone]
    data = json_bytes(committed.manifest | {"superseded": kept})
    lake.objects.replace(lake.path(manifest_path(hour)), data, committed.tag)
