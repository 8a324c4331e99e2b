"""Ingest one hour: read the landed files, normalize, validate, deduplicate, write the lake.

Streams file by file: rows wait in small per-event-type buffers (at most `flush_rows` in all)
that are validated, deduplicated and appended to the hour's Parquet files, so memory does not
grow with the hour. Counts reconcile by construction (design.md, Report contract):
`events.read == written + quarantined + duplicates`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from currents_relay import catalogue
from currents_relay.environment import env_number
from currents_relay.hours import hour_key
from currents_relay.ingest.landing import LandedFile, list_hour, read_all
from currents_relay.ingest.normalize import (
    Lineage,
    avro_table,
    http_tables,
    lineage_columns,
    to_http,
    to_record,
)
from currents_relay.keyset import KeySet, first_new, keys_of
from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseSettings
from currents_relay.lake.versions import (
    HourWriter,
    collect_garbage,
    manifest_path,
    read_committed,
)
from currents_relay.validation.suites import TimeBounds, checked_table, make_validator

log = logging.getLogger(__name__)


def max_file_bytes_from_env() -> int:
    """`CURRENTS_RELAY_MAX_FILE_BYTES` (default 1 GiB)."""
    return int(env_number("CURRENTS_RELAY_MAX_FILE_BYTES", 1 << 30, minimum=1))


@dataclass(frozen=True)
class IngestOptions:
    dry_run: bool = False  # validate and report, write nothing
    validation_engine: str = "arrow"  # or "gx": run the suites with Great Expectations itself
    flush_rows: int = 100_000  # rows buffered across event types before validating and writing
    bounds: TimeBounds = field(default_factory=TimeBounds)
    lease: LeaseSettings | None = None  # default: from the environment
    # A file larger than this (or a gzip body that inflates beyond it) is quarantined unread:
    # memory is bounded by the largest file accepted, not by what an attacker sends.
    max_file_bytes: int = field(default_factory=max_file_bytes_from_env)


PROGRESS_SECONDS = 5.0  # the ingest logs its progress this often
HTTP_BATCH_EVENTS = 20_000  # HTTP events mapped together (per-batch costs dominate small files)
JSON_LINES = (".jsonl", ".ndjson")
GZIP = ".gz"
UNREAD = {
    "symlink": "a symbolic link: never followed (copy the file into the landing zone)",
    "not_a_file": "a folder or device where a data file is expected",
    "undecodable_file_name": "the file name is not UTF-8",
}
# Quarantine rows keep at most this much of a rejected payload, with its size and checksum.
PAYLOAD_PREFIX = 65_536


class UnreadableFile(Exception):
    """A file that cannot be read whole; it is quarantined whole, with `reason`."""

    def __init__(self, message: str, reason: str = "unreadable_file") -> None:
        super().__init__(message)
        self.reason = reason


def _avro_event_type(data: bytes) -> str | None:
    """The known event type an Avro file's writer schema names (Braze names it
    `dataexport.<store>.inner.<event type>`), or None where it names none."""
    import fastavro

    try:
        schema = fastavro.reader(io.BytesIO(data)).writer_schema
    except Exception:
        return None  # unreadable: the readers below say why
    name = schema.get("name", "") if isinstance(schema, dict) else ""
    namespace = schema.get("namespace") if isinstance(schema, dict) else None
    full = f"{namespace}.{name}" if namespace and "." not in name else name
    matches = [t for t in catalogue.known_event_types() if full == t or full.endswith(f".{t}")]
    return max(matches, key=len) if matches else None


def _loads(data: bytes | str) -> Any:
    """orjson (strict UTF-8, at most 1,024 levels deep); the standard library's parser for
    text orjson refuses (invalid UTF-8 is kept as surrogates, quarantined per value)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "recursion limit" in str(error):
            raise ValueError("nested deeper than 1,024 levels") from None
        text = data if isinstance(data, str) else data.decode("utf-8", errors="surrogateescape")
        return json.loads(text)


def _gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body inflated, refused beyond `limit` bytes (a small file can inflate to any
    size) or when it is not gzip."""
    inflate = zlib.decompressobj(wbits=31)  # gzip framing
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error as error:
        raise UnreadableFile(f"not a gzip body: {error}") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise UnreadableFile(
            f"the gzip body inflates beyond max_file_bytes ({limit:,})", reason="too_large"
        )
    return out


_NO_PAYLOAD = object()


def _row(
    uri: str,
    offset: int | None,
    reasons: list[str],
    payload: Any = _NO_PAYLOAD,
    event_type: str | None = None,
) -> dict[str, Any]:
    """A quarantine row: where it came from, why, and the rejected payload as JSON (a row's
    `event_type` and `id` are read from the payload where it is an object): at most its
    first `PAYLOAD_PREFIX` characters, with the whole payload's size in bytes and its SHA-256
    (to match it with the source)."""
    source = payload if isinstance(payload, dict) else {}
    row = {
        "source_uri": uri,
        "source_offset": offset,
        "event_type": event_type or _text(source.get("event_type")),
        "id": _text(source.get("id")),
        "reasons": reasons,
        "payload": None,
        "error": None,
    }
    if payload is not _NO_PAYLOAD:
        text = json.dumps(payload, ensure_ascii=True, default=str)
        encoded = text.encode()  # ASCII: non-ASCII characters are escaped
        row["payload"] = text[:PAYLOAD_PREFIX]
        row["payload_bytes"] = len(encoded)
        row["payload_sha256"] = hashlib.sha256(encoded).hexdigest()
    return row


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _micros(iso: str) -> int:
    """Microseconds since the epoch of an ISO time (naive times are UTC, as Arrow reads them)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HourIngest:
    """One run over one hour of the landing zone."""

    def __init__(
        self, landing_url: str, lake_url: str, hour: Any, options: IngestOptions = IngestOptions()
    ) -> None:
        self.landing_url = landing_url
        self.lake = Lake(lake_url)
        self.hour = hour
        self.hour_key = hour_key(hour)
        self.options = options
        self.validator = make_validator(options.validation_engine, options.bounds)
        self.writer: HourWriter | None = (
            None if options.dry_run else HourWriter(self.lake, self.hour_key)
        )
        self._buffers: dict[str, list[pa.Table]] = {}  # event type -> tables, in order
        self._buffered = 0
        self._http_pending: list[tuple[LandedFile, list[Any], list[int]]] = []
        self._http_pending_events = 0
        self._seen: dict[str, KeySet] = {}  # event type -> keys written this hour
        self._file_index: dict[str, int] = {}
        self._file_format: dict[str, str] = {}
        self.files: list[dict[str, Any]] = []
        self.counts = Counter({"read": 0, "duplicates": 0, "quarantined": 0, "written": 0})
        self.by_event_type: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    # ---- reading -----------------------------------------------------------------------------
    def run(self, files: list[LandedFile] | None = None) -> dict[str, Any]:
        """Process the hour and return its report; unless a dry run, commit it as the hour's
        new version (its manifest, holding the report, is the commit point), holding the
        hour's `process` lease throughout."""
        if files is None:
            files = list_hour(self.landing_url, self.hour)
        if self.writer is None:
            previous = self.lake.read_json(manifest_path(self.hour_key))
            self._ingest(files)
            return self._report(previous, {})
        with Lease(self.lake, self.hour_key, "process", "process", self.options.lease) as lease:
            committed = read_committed(self.lake, self.hour_key)
            # Replaced versions past their grace period; a killed run's files where one left
            # its lease behind.
            collected = collect_garbage(
                self.lake, self.hour_key, committed, orphans=lease.took_over
            )
            try:
                self._ingest(files)
                outputs = self.writer.close()
                lease.check()
                outputs["validation"] = self.writer.write_validation(self.validator.summary())
                report = self._report(committed.manifest if committed else None, outputs)
                committed = self.writer.commit(
                    self._manifest(report, outputs), committed, lease.check, collected
                )
            except BaseException as error:
                self.writer.abort()
                if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                    raise OSError(
                        errno.ENOSPC,
                        f"the lake {self.lake.url} is full: hour {self.hour_key} was not "
                        "committed; its previous version stays live and this run's files "
                        "were removed",
                    ) from error
                raise
            collect_garbage(self.lake, self.hour_key, committed)
        return report

    def _ingest(self, files: list[LandedFile]) -> None:
        started = last = time.monotonic()
        for index, (landed, data) in enumerate(read_all(files, self._too_large)):
            self._ingest_file(index, landed, data)
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                log.info(
                    "hour %s: %d of %d files read, %d events, %.0f s",
                    self.hour_key,
                    index + 1,
                    len(files),
                    self.counts["read"],
                    last - started,
                )
        self._flush()
        log.info(
            "hour %s: %d files read, %d events (%d written), %.1f s",
            self.hour_key,
            len(files),
            self.counts["read"],
            self.counts["written"],
            time.monotonic() - started,
        )

    def _ingest_file(self, index: int, landed: LandedFile, data: bytes | None) -> None:
        entry = landed.to_dict() | {
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
            "size": len(data) if data is not None else landed.size,
            "events": 0,
            "status": "ok",
        }
        self.files.append(entry)
        self._file_index[landed.uri] = index
        self._file_format[landed.uri] = landed.format
        try:
            if data is None or len(data) > self.options.max_file_bytes:
                raise self._unread(landed)
            if landed.format == "avro":
                events = self._read_avro(landed, data)
            else:
                events = self._read_http(landed, data)
        except UnreadableFile as error:
            log.warning("quarantining file %s: %s", landed.uri, error)
            entry["status"] = "quarantined"
            entry["reason"] = error.reason
            entry["error"] = str(error)
            row = _row(landed.uri, None, [error.reason], event_type=landed.event_type)
            self._quarantine([row | {"error": str(error)[:2000]}], count=False)
            return
        entry["events"] = events
        self.counts["read"] += events
        if self._buffered >= self.options.flush_rows:
            self._flush()

    def _unread(self, landed: LandedFile) -> UnreadableFile:
        """Why a file is quarantined without being read."""
        if landed.problem:
            return UnreadableFile(UNREAD[landed.problem], reason=landed.problem)
        limit = self.options.max_file_bytes
        return UnreadableFile(f"larger than max_file_bytes ({limit:,})", reason="too_large")

    def _too_large(self, landed: LandedFile) -> bool:
        return landed.size > self.options.max_file_bytes

    @staticmethod
    def _lineage(landed: LandedFile, offsets: list[int]) -> Lineage:
        stamp = _micros(landed.landed_at) if landed.landed_at else None
        return lineage_columns(landed.uri, offsets, stamp)

    def _read_avro(self, landed: LandedFile, data: bytes) -> int:
        event_type = landed.event_type or "unknown"
        written_as = _avro_event_type(data)
        if written_as and written_as != event_type:
            raise UnreadableFile(
                f"its records are {written_as} events, in the folder of {event_type}",
                reason="event_type_mismatch",
            )
        try:
            decoded = pl.read_avro(io.BytesIO(data)).to_arrow()
        except Exception:  # polars refuses some valid files: let fastavro decide
            decoded = None
        if decoded is None:
            try:
                import fastavro

                records = list(fastavro.reader(io.BytesIO(data)))
            except Exception as error:
                raise UnreadableFile(f"{type(error).__name__}: {error}") from error
            decoded = pa.Table.from_pylist(records) if records else pa.table({})
        n = decoded.num_rows
        lineage = self._lineage(landed, list(range(n)))
        if n:
            table, reasons = avro_table(event_type, decoded, lineage)
            bad = sorted(reasons)
            if bad:
                raw = decoded.take(bad).to_pylist()
                self._quarantine(
                    [
                        _row(landed.uri, i, reasons[i], rec, event_type=event_type)
                        for i, rec in zip(bad, raw, strict=True)
                    ]
                )
                table = table.filter(pa.array([i not in reasons for i in range(n)]))
            self._buffer(event_type, table)
        return n

    @staticmethod
    def _parse_http(
        landed: LandedFile, data: bytes
    ) -> tuple[list[Any], list[int], list[tuple[int, str]]]:
        """The events of an HTTP batch file with their offsets, and the JSON-lines lines that
        do not parse. A key given twice in an object keeps its last value (as orjson and `json`
        do)."""
        if not landed.uri.removesuffix(GZIP).endswith(JSON_LINES):
            try:
                body = _loads(data)
            except (ValueError, RecursionError) as error:
                why = "nested too deep" if isinstance(error, RecursionError) else str(error)[:500]
                raise UnreadableFile(f"malformed JSON: {why}") from None
            if not isinstance(body, dict) or not isinstance(body.get("events"), list):
                raise UnreadableFile('not a Custom HTTP body: expected {"events": [...]}')
            return body["events"], list(range(len(body["events"]))), []
        # Lines end at \n, \r or \r\n only: a JSON string may hold U+2028 as it is.
        lines = [line for line in data.splitlines() if line and not line.isspace()]
        events: list[Any] = []
        offsets: list[int] = []
        bad_lines: list[tuple[int, str]] = []
        for offset, line in enumerate(lines):
            try:
                events.append(_loads(line))
                offsets.append(offset)
            except (ValueError, RecursionError):
                bad_lines.append((offset, line.decode("utf-8", errors="surrogateescape")))
        return events, offsets, bad_lines

    def _read_http(self, landed: LandedFile, data: bytes) -> int:
        if landed.uri.endswith(GZIP):
            data = _gunzip(data, self.options.max_file_bytes)
        events, offsets, bad_lines = self._parse_http(landed, data)
        self._quarantine(
            [_row(landed.uri, offset, ["malformed_json:line"], line) for offset, line in bad_lines]
        )
        self._http_pending.append((landed, events, offsets))
        self._http_pending_events += len(events)
        if self._http_pending_events >= HTTP_BATCH_EVENTS:
            self._flush_http()
        return len(events) + len(bad_lines)

    def _flush_http(self) -> None:
        """Map the waiting HTTP files together; quarantine the events refused for a
        structural reason."""
        pending, self._http_pending, self._http_pending_events = self._http_pending, [], 0
        if not pending:
            return
        events = [event for _, file_events, _ in pending for event in file_events]
        parts = [self._lineage(landed, offsets) for landed, _, offsets in pending]
        lineage = {
            name: pa.concat_arrays([part[name] for part in parts])
            for name in catalogue.LINEAGE_FIELDS
        }
        tables, rejected = http_tables(events, lineage)
        uris, offsets = lineage["source_uri"], lineage["source_offset"]
        self._quarantine(
            [
                _row(uris[i].as_py(), offsets[i].as_py(), why, events[i])
                for i, why in rejected.items()
            ]
        )
        for event_type, table in tables.items():
            self._buffer(event_type, table, keep_http=True)

    # ---- validating, deduplicating, writing ---------------------------------------------------
    def _buffer(self, event_type: str, table: pa.Table, keep_http: bool = False) -> None:
        if not keep_http:
            self._flush_http()  # HTTP events waiting to be mapped come first (file order)
        if table.num_rows:
            self._buffers.setdefault(event_type, []).append(table)
            self._buffered += table.num_rows

    def _flush(self) -> None:
        """Validate the buffered rows family by family, drop duplicates, write the rest."""
        self._flush_http()
        by_family: dict[str, list[tuple[str, pa.Table]]] = {}
        for event_type, tables in sorted(self._buffers.items()):
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            by_family.setdefault(catalogue.family_of(event_type), []).append((event_type, table))
        self._buffers.clear()
        self._buffered = 0
        for family, members in by_family.items():
            self._flush_family(family, members)

    def _flush_family(self, family: str, members: list[tuple[str, pa.Table]]) -> None:
        narrow = pa.concat_tables(
            [checked_table(t, family, self.options.bounds) for _, t in members],
            promote_options="permissive",
        )
        lineage = pa.concat_tables([t.select(["source_uri", "source_offset"]) for _, t in members])

        def locate(row: int) -> tuple[int, int]:
            """(file index, record offset) of a row that fails a rule."""
            uri, offset = lineage["source_uri"][row], lineage["source_offset"][row]
            return self._file_index[uri.as_py()], offset.as_py()

        failures = self.validator.validate(family, narrow, locate)
        start = 0
        for event_type, table in members:
            n = table.num_rows
            failed = {i - start: why for i, why in failures.items() if start <= i < start + n}
            start += n
            self._write_valid(event_type, table, failed)

    def _write_valid(self, event_type: str, table: pa.Table, failed: dict[int, list[str]]) -> None:
        if failed:
            rows = table.take(sorted(failed)).to_pylist()
            as_source = {"http": to_http, "avro": to_record}
            self._quarantine(
                [
                    _row(
                        row["source_uri"],
                        row["source_offset"],
                        failed[i],
                        as_source[self._file_format[row["source_uri"]]](row),
                        event_type=row["event_type"],
                    )
                    for i, row in zip(sorted(failed), rows, strict=True)
                ]
            )
        valid = np.ones(table.num_rows, dtype=bool)
        valid[list(failed)] = False
        keys = keys_of(table["id"])
        seen = self._seen.setdefault(event_type, KeySet())
        # Only valid rows compete: the first *valid* copy in file order is the one kept.
        keep = np.zeros(table.num_rows, dtype=bool)
        keep[valid] = first_new(keys.filter(pl.Series(valid)) if failed else keys, seen)
        seen.add(keys.filter(pl.Series(keep)))
        self.counts["duplicates"] += int(valid.sum() - keep.sum())
        table = table.filter(pa.array(keep)) if not keep.all() else table
        self.counts["written"] += table.num_rows
        if table.num_rows:
            self.by_event_type[event_type] += table.num_rows
        if self.writer:
            self.writer.write_events(event_type, table)

    def _quarantine(self, rows: list[dict[str, Any]], count: bool = True) -> None:
        if not rows:
            return
        if count:
            self.counts["quarantined"] += len(rows)
        for row in rows:
            self.reasons.update(row["reasons"])
        if self.writer:
            self.writer.write_quarantine(rows)

    # ---- results ------------------------------------------------------------------------------
    def _report(self, previous: dict | None, outputs: dict[str, Any]) -> dict[str, Any]:
        known = {(f["uri"], f["sha256"]) for f in (previous or {}).get("files", [])}
        return {
            "hour": self.hour_key,
            "dry_run": self.options.dry_run,
            "version": self.writer.version if self.writer else None,
            "catalogue_version": catalogue.catalogue_version(),
            "files": {
                "read": len(self.files),
                "quarantined": sum(f["status"] == "quarantined" for f in self.files),
                "avro": sum(f["format"] == "avro" for f in self.files),
                "http": sum(f["format"] == "http" for f in self.files),
                "new_since_previous_run": (
                    sum((f["uri"], f["sha256"]) not in known for f in self.files)
                    if previous
                    else None
                ),
            },
            "events": dict(self.counts),
            "by_event_type": dict(sorted(self.by_event_type.items())),
            "quarantine_reasons": dict(sorted(self.reasons.items())),
            "lake": self.lake.url,
        }

    def _manifest(self, report: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "hour": self.hour_key,
            "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "catalogue_version": catalogue.catalogue_version(),
            "files": self.files,
            "events": report["events"],
            "by_event_type": report["by_event_type"],
            "outputs": outputs,
            "report": report,
        }


def process_hour(
    landing_url: str,
    lake_url: str,
    hour: Any,
    *,
    dry_run: bool = False,
    files: list[LandedFile] | None = None,
    bounds: TimeBounds | None = None,
    validation_engine: str = "arrow",
) -> dict[str, Any]:
    """Ingest one hour and return its report (the function the CLI and the DAG call)."""
    options = IngestOptions(
        dry_run=dry_run, bounds=bounds or TimeBounds(), validation_engine=validation_engine
    )
    return HourIngest(landing_url, lake_url, hour, options).run(files)
