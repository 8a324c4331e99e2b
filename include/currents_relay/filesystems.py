"""File systems behind the landing zone and the lake: any URL fsspec opens."""

from __future__ import annotations

from typing import Any

import fsspec

# The package that gives fsspec each object store, and the extra that installs it.
STORAGE_EXTRAS = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
}


class StorageUnavailable(ValueError):
    """A URL's storage needs a package that is not installed."""


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system of `url` (credentials from the standard environment:
    `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `GOOGLE_APPLICATION_CREDENTIALS`, ...)."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    # Object stores: no cached listings (another process's new objects must show).
    options = {} if scheme in ("file", "local") else {"use_listings_cache": False}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        package, extra = STORAGE_EXTRAS.get(scheme, (scheme, scheme))
        raise StorageUnavailable(
            f"{scheme}:// needs the package {package}: pip install 'currents-relay[{extra}]'"
        ) from None
    return fs, root.rstrip("/")


def is_local(fs: Any) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols


def url_of(fs: Any, path: str) -> str:
    """What a reader opens: a local path as it is, else the object's URL."""
    if is_local(fs):
        return path
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{path}"
