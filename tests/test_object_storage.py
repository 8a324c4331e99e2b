"""Object storage end to end: an hour landed on S3 is processed into an S3 lake exactly as
from a local disk; a missing extra, or a lake without conditional writes, is a clear error."""

from __future__ import annotations

import types

import pytest

from currents_relay.filesystems import StorageUnavailable, filesystem
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.ingest.landing import LandedFile, read_all
from currents_relay.lake import Lake
from currents_relay.lake.objects import ConditionalWritesUnsupported, objects_for
from currents_relay.lake.versions import live_files
from tests.conftest import HOUR


def upload(local, url: str) -> None:
    fs, root = filesystem(url)
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(local)}", path.read_bytes())


def test_an_hour_landed_on_s3_goes_to_an_s3_lake_as_from_a_local_disk(
    generated_hour, tmp_path, s3_server
):
    landing, _ = generated_hour
    bucket = s3_server.bucket()
    upload(landing, f"s3://{bucket}/landing")
    local = process_hour(str(landing), str(tmp_path / "lake"), parse_hour(HOUR))
    remote = process_hour(f"s3://{bucket}/landing", f"s3://{bucket}/lake", parse_hour(HOUR))
    for key in ("events", "by_event_type", "quarantine_reasons"):
        assert remote[key] == local[key]
    assert remote["files"] | {"new_since_previous_run": None} == local["files"]
    urls = live_files(Lake(f"s3://{bucket}/lake"), HOUR)
    assert len(urls) == len(local["by_event_type"]) and all(u.startswith("s3://") for u in urls)


def test_object_store_files_are_read_ahead_in_order_within_their_window(s3_lake):
    fs, root = filesystem(s3_lake)
    files = []
    for i in range(20):
        fs.pipe_file(f"{root}/f{i:02}", bytes([i]) * (i + 1))
        files.append(LandedFile(f"s3://{root}/f{i:02}", i + 1, "http", None, ""))
    read = list(read_all(files, window=3, window_bytes=10))
    assert [landed for landed, _ in read] == files
    assert [data for _, data in read] == [bytes([i]) * (i + 1) for i in range(20)]


def test_a_missing_storage_extra_is_one_line_naming_it(monkeypatch):
    import fsspec

    def missing(*args, **kwargs):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    with pytest.raises(StorageUnavailable) as error:
        filesystem("s3://bucket/lake")
    assert str(error.value) == "s3:// needs the package s3fs: pip install 'currents-relay[s3]'"


def test_a_lake_without_conditional_writes_is_refused_clearly():
    gcs = types.SimpleNamespace(protocol=("gs", "gcs"))
    with pytest.raises(ConditionalWritesUnsupported, match="gs:// lakes are not supported"):
        objects_for(gcs)
