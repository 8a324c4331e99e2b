"""A lake root URL and the few ways the lake writes to it."""

from __future__ import annotations

import json
import os
import uuid
from functools import cached_property
from typing import Any

import orjson

from currents_relay.filesystems import filesystem, is_local, url_of
from currents_relay.lake.objects import Objects, objects_for


def json_bytes(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"


class Lake:
    """A lake root URL (a local path, `file://`, `s3://`, `gs://`, `az://`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = filesystem(url)
        self.local = is_local(self.fs)

    @cached_property
    def objects(self) -> Objects:
        """Conditional writes (leases, commits); raises where the storage has none."""
        return objects_for(self.fs)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def relative(self, path: str) -> str:
        return path[len(self.root) + 1 :]

    def uri(self, relative: str) -> str:
        """What a reader opens: a local path, or the object's URL."""
        return url_of(self.fs, self.path(relative))

    def write_bytes(self, relative: str, data: bytes) -> None:
        """A whole object at once: on a local disk a temporary name renamed into place; on an
        object store one PUT (atomic there: a copy and delete would only add a window)."""
        target = self.path(relative)
        if not self.local:
            self.fs.pipe_file(target, data)
            return
        folder = target.rsplit("/", 1)[0]
        os.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)

    def write_json(self, relative: str, data: Any) -> None:
        self.write_bytes(relative, json_bytes(data))

    def read_json(self, relative: str) -> Any | None:
        try:
            return json.loads(self.fs.cat_file(self.path(relative)))
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching `pattern` (relative too), sorted."""
        return sorted(self.relative(p) for p in self.fs.glob(self.path(pattern)))
