"""The landing zone: where Currents writes an hour's files, and how we find and read them.

Storage exports: `<prefix>/dataexport.<cluster>.<S3|GCS|AzureBlob>.integration.<id>/
event_type=<type>/date=<YYYY-MM-DD-HH>/<schema-id>/<zone>/<name>.avro` (the event type comes
from the path, the file name means nothing). Custom HTTP batches: `<prefix>/http/
date=<YYYY-MM-DD-HH>/<name>.json` (`{"events": [...]}`) or `.jsonl` / `.ndjson`.
Landing URLs are anything fsspec opens (local paths, `file://`, `s3://`, `gs://`).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec

from currents_relay.filesystems import filesystem, is_local, url_of
from currents_relay.hours import date_partition

HTTP_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
DATA_SUFFIXES = (*HTTP_SUFFIXES, ".avro")
_EVENT_TYPE = re.compile(r"/event_type=([^/]+)/")


class LandingError(Exception):
    """The landing zone cannot be listed (missing, unreachable, not a folder)."""


@dataclass(frozen=True)
class LandedFile:
    """One data file of the hour, as listed (read later)."""

    uri: str
    size: int
    format: str  # "avro" or "http"
    event_type: str | None  # from the path for storage exports; None for HTTP batches
    landed_at: str  # ISO time the file was last modified in the landing zone
    # Why the file is quarantined unread: "symlink" (never followed), "not_a_file" (a folder
    # or a device where a data file is expected), "undecodable_file_name" (not UTF-8; `uri`
    # then shows its bytes escaped).
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LandedFile:
        return cls(**data)


def _mtime(info: dict[str, Any]) -> str:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC).isoformat()
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        return str(value)
    return ""


def _local_entries(top: str) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """Every entry under a local folder, without following a symlink: (path, its `stat`
    as fsspec details, the problem that keeps it unread)."""
    folders = [top]
    while folders:
        with os.scandir(folders.pop()) as scan:
            entries = sorted(scan, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue  # temporary or marker files (e.g. `_SUCCESS`, `.part`)
            if entry.is_symlink():
                yield entry.path, {}, "symlink"
            elif entry.is_dir(follow_symlinks=False):
                if entry.name.endswith(DATA_SUFFIXES):
                    yield entry.path, {}, "not_a_file"
                else:
                    folders.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                yield entry.path, {"size": info.st_size, "mtime": info.st_mtime}, None
            else:
                yield entry.path, {}, "not_a_file"


def _remote_entries(
    fs: fsspec.AbstractFileSystem, top: str
) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    for path, info in sorted(fs.find(top, detail=True).items()):
        if info.get("type") == "file" and not path.rsplit("/", 1)[-1].startswith((".", "_")):
            yield path, info, None


def _readable_name(path: str) -> tuple[str, bool]:
    """A path fit for reports, and whether it is the path itself (a file name that is not
    UTF-8 is shown with its bytes escaped)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace"), False
    return path, True


def list_hour(landing_url: str, hour: datetime) -> list[LandedFile]:
    """Every data file Currents landed for `hour`, in stable (uri) order, and every entry
    where a data file should be that cannot be read as one (with its `problem`)."""
    fs, root = filesystem(landing_url)
    if not fs.exists(root) or not fs.isdir(root):
        raise LandingError(f"landing zone {landing_url!r} does not exist or is not a folder")
    date = date_partition(hour)
    partitions = fs.glob(f"{root}/*/event_type=*/date={date}") + fs.glob(
        f"{root}/event_type=*/date={date}"
    )
    partitions += [p for p in (f"{root}/http/date={date}",) if fs.isdir(p)]
    local = is_local(fs)
    files: list[LandedFile] = []
    for partition in sorted(set(partitions)):
        entries = _local_entries(partition) if local else _remote_entries(fs, partition)
        for path, info, problem in entries:
            shown, readable = _readable_name(path)
            if not readable:
                problem = problem or "undecodable_file_name"
            name = shown.rsplit("/", 1)[-1]
            match = _EVENT_TYPE.search(shown + "/")
            if match:
                kind, event_type = "avro", match.group(1)
            elif name.endswith(HTTP_SUFFIXES):
                kind, event_type = "http", None
            else:
                kind, event_type = "avro" if name.endswith(".avro") else "http", None
            files.append(
                LandedFile(
                    url_of(fs, shown),
                    int(info.get("size") or 0),
                    kind,
                    event_type,
                    _mtime(info),
                    problem,
                )
            )
    return sorted(files, key=lambda f: f.uri)


def read_all(
    files: Sequence[LandedFile],
    skip: Callable[[LandedFile], bool] = lambda landed: False,
    window: int = 32,
    window_bytes: int = 256 << 20,
) -> Iterator[tuple[LandedFile, bytes | None]]:
    """Each file with its bytes (None: `skip` said so, or it has a `problem`), in order.
    Object-store files are fetched ahead on threads, at most `window` files and
    `window_bytes` (by their listed sizes) at a time: one GET is a round trip, and sequential
    reads would wait on each. Local files are read as needed."""

    def read(landed: LandedFile) -> bytes | None:
        unread = landed.problem is not None or skip(landed)
        return None if unread else read_bytes(landed.uri)

    if not any("://" in landed.uri for landed in files):
        yield from ((landed, read(landed)) for landed in files)
        return
    with ThreadPoolExecutor(min(window, 16), thread_name_prefix="landing-read") as pool:
        pending: deque[tuple[LandedFile, Future[bytes | None]]] = deque()
        ahead = 0  # bytes fetched or being fetched, by the listed sizes

        def first() -> tuple[LandedFile, bytes | None]:
            nonlocal ahead
            landed, future = pending.popleft()
            ahead -= landed.size
            return landed, future.result()

        for landed in files:
            while pending and (len(pending) >= window or ahead + landed.size > window_bytes):
                yield first()
            pending.append((landed, pool.submit(read, landed)))
            ahead += landed.size
        while pending:
            yield first()


def read_bytes(uri: str) -> bytes:
    if "://" not in uri:  # a local path, as `list_hour` names local files: no fsspec round
        with open(uri, "rb") as handle:  # trip (a tenth of a small file's ingest)
            return handle.read()
    fs, path = filesystem(uri)
    return fs.cat_file(path)
