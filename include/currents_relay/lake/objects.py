"""Small objects written on a condition: the lake's compare-and-swap.

Leases and each hour's manifest (its commit point) are written only if the object is as the
writer last saw it. `tag` names one stored version of an object (S3's ETag; on a local disk,
the content's digest):

- `create(path, data)` writes only where nothing is (S3 `If-None-Match: *`; a local disk:
  a hard link of a complete temporary file, which fails if the name exists);
- `replace(path, data, tag)` writes only over the version `tag` (S3 `If-Match`; a local disk:
  compare and rename under an exclusive `flock` of a lock file beside the object);
- `delete(path, tag)` removes only the version `tag`.

Each returns whether it happened; a refused condition is an answer, never an exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from currents_relay.filesystems import is_local


class ConditionalWritesUnsupported(Exception):
    """The lake's storage offers no conditional writes this project can use."""


@dataclass(frozen=True)
class Stored:
    data: bytes
    tag: str


class Objects(Protocol):
    def get(self, path: str) -> Stored | None: ...
    def create(self, path: str, data: bytes) -> str | None: ...
    def replace(self, path: str, data: bytes, tag: str) -> str | None: ...
    def delete(self, path: str, tag: str) -> bool: ...


def objects_for(fs: Any) -> Objects:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if is_local(fs):
        return LocalObjects()
    if "s3" in protocols or "s3a" in protocols:
        return S3Objects(fs)
    raise ConditionalWritesUnsupported(
        f"leases and commits need conditional writes; {protocols[0]}:// lakes are not supported "
        "yet (use a local disk or s3://)"
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalObjects:
    """Conditional writes on a POSIX file system (a local disk; NFS with working `flock`)."""

    def get(self, path: str) -> Stored | None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return Stored(data, _digest(data))

    def _temporary(self, path: str, data: bytes) -> str:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temporary

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(f"{folder}/.{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def create(self, path: str, data: bytes) -> str | None:
        temporary = self._temporary(path, data)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return None
        finally:
            os.unlink(temporary)
        return _digest(data)

    def replace(self, path: str, data: bytes, tag: str) -> str | None:
        with self._locked(path):
            current = self.get(path)
            if current is None or current.tag != tag:
                return None
            os.replace(self._temporary(path, data), path)
        return _digest(data)

    def delete(self, path: str, tag: str) -> bool:
        with self._locked(path):
            current = self.get(path)
            if current is None or current.tag != tag:
                return False
            os.unlink(path)
        return True


def _refused(error: BaseException) -> bool:
    """Whether an s3fs error is S3 refusing a condition (412, or 409 for a concurrent
    conditional write to the same key), or the object being absent for `If-Match`; a
    missing bucket, or anything else, is an error."""
    cause = error.__cause__ or error.__context__
    response = getattr(cause, "response", None) or getattr(error, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    if code == "NoSuchBucket":
        return False
    if status in (404, 409, 412) or code in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
        "NoSuchKey",
    ):
        return True
    return isinstance(error, FileExistsError)


class S3Objects:
    """Conditional writes on S3 (and S3-compatible stores that implement them)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    @staticmethod
    def _key(path: str) -> dict[str, str]:
        bucket, _, key = path.partition("/")
        return {"Bucket": bucket, "Key": key}

    def get(self, path: str) -> Stored | None:
        try:
            answer = self.fs.call_s3("get_object", **self._key(path))
        except FileNotFoundError:
            return None
        return Stored(_read_body(self.fs, answer["Body"]), answer["ETag"])

    def _put(self, path: str, data: bytes, **condition: str) -> str | None:
        try:
            answer = self.fs.call_s3("put_object", Body=data, **self._key(path), **condition)
        except OSError as error:
            if _refused(error):
                return None
            raise
        self.fs.invalidate_cache(path)
        return answer["ETag"]

    def create(self, path: str, data: bytes) -> str | None:
        return self._put(path, data, IfNoneMatch="*")

    def replace(self, path: str, data: bytes, tag: str) -> str | None:
        return self._put(path, data, IfMatch=tag)

    def delete(self, path: str, tag: str) -> bool:
        try:
            self.fs.call_s3("delete_object", **self._key(path), IfMatch=tag)
        except OSError as error:
            if _refused(error):
                return False
            raise
        self.fs.invalidate_cache(path)
        return True


def _read_body(fs: Any, body: Any) -> bytes:
    """An aiobotocore streaming body, read on s3fs's event loop."""
    from fsspec.asyn import sync

    async def read() -> bytes:
        async with body as stream:
            return await stream.read()

    return sync(fs.loop, read)
