"""One commit point per hour: readers see the old or the new version whole, never a mix;
killed and failed runs leave nothing live and the next run cleans up; `lake files` is the
reading interface the README documents."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.lake import Lake
from currents_relay.lake.versions import (
    hour_version_files,
    live_files,
    read_committed,
    version_of,
)
from tests.conftest import HOUR, ROOT

CLI = [sys.executable, "-m", "currents_relay.cli"]


def whole_version(lake: Lake, hour: str = HOUR) -> tuple[str, dict[str, int]]:
    """Read the hour as a reader does (manifest, then its files): its version and rows per
    event type, checked against what the manifest says; fails on any mix or gap."""
    committed = read_committed(lake, hour)
    assert committed is not None
    rows = {}
    for event_type, files in committed.event_files().items():
        assert {version_of(f) for f in files} == {committed.version}, "a mix of versions"
        total = 0
        for relative in files:
            with lake.fs.open(lake.path(relative), "rb") as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        rows[event_type] = total
    assert rows == committed.manifest["by_event_type"], "files and manifest disagree"
    return committed.version, rows


def run_process(landing, lake_url, **env) -> subprocess.CompletedProcess:
    command = [*CLI, "process", "--landing", str(landing), "--lake", lake_url, "--hour", HOUR]
    return subprocess.run(
        command, cwd=ROOT, env=os.environ | env, capture_output=True, text=True, timeout=300
    )


def test_lake_files_prints_the_live_files_that_duckdb_pyarrow_and_polars_read(
    generated_hour, lake_url
):
    landing, _ = generated_hour
    report = process_hour(str(landing), lake_url, parse_hour(HOUR))
    process_hour(str(landing), lake_url, parse_hour(HOUR))  # a second version; the first stays
    done = subprocess.run(
        [*CLI, "lake", "files", "--lake", lake_url, "--hour", HOUR],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    urls = done.stdout.split()
    assert len(urls) == len(report["by_event_type"])
    lake = Lake(lake_url)
    assert len(hour_version_files(lake, HOUR)) > len(urls)  # the replaced version is still there
    assert all(u.startswith("s3://") for u in urls) or all(Path(u).is_file() for u in urls)

    import pyarrow.dataset as ds

    written = report["events"]["written"]
    if not lake.local:  # pyarrow through the lake's fsspec file system (s3fs)
        paths = [u.removeprefix("s3://") for u in urls]
        assert ds.dataset(paths, format="parquet", filesystem=lake.fs).count_rows() == written
        return
    import duckdb
    import polars as pl

    assert ds.dataset(urls, format="parquet").count_rows() == written
    query = f"select count(*) from read_parquet({urls!r}, union_by_name = true)"
    assert duckdb.sql(query).fetchall()[0][0] == written
    frames = pl.concat([pl.scan_parquet(u) for u in urls], how="diagonal_relaxed")
    assert frames.select(pl.len()).collect().item() == written
    sms = "users.messages.sms.Send"
    (one,) = live_files(lake, HOUR, sms)
    assert pq.read_table(one).num_rows == report["by_event_type"][sms]


def test_lake_gc_deletes_replaced_versions_past_their_grace_period(generated_hour, lake_url):
    landing, _ = generated_hour
    for _ in range(3):
        process_hour(str(landing), lake_url, parse_hour(HOUR))
    lake = Lake(lake_url)
    live = whole_version(lake)
    assert len({version_of(f) for f in hour_version_files(lake, HOUR)}) == 3
    gc = [*CLI, "lake", "gc", "--lake", lake_url]
    kept = subprocess.run(gc, cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(kept.stdout)["deleted_files"] == 0  # within the grace period (a day)
    done = subprocess.run([*gc, "--grace", "0"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["deleted_files"] > 0
    assert {version_of(f) for f in hour_version_files(lake, HOUR)} == {live[0]}
    assert whole_version(lake) == live and read_committed(lake, HOUR).manifest["superseded"] == []


def test_lake_files_of_an_hour_never_processed_is_a_clear_error(lake_url):
    done = subprocess.run(
        [*CLI, "lake", "files", "--lake", lake_url, "--hour", HOUR],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "never processed" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def two_landings(generated_hour, tmp_path) -> tuple[Path, Path]:
    """The generated hour, and the same without one event type: two different versions."""
    source, _ = generated_hour
    full, smaller = tmp_path / "full", tmp_path / "smaller"
    shutil.copytree(source, full)
    shutil.copytree(source, smaller)
    for folder in smaller.rglob("event_type=users.behaviors.CustomEvent"):
        shutil.rmtree(folder)
    return full, smaller


def test_a_reader_sees_the_old_or_the_new_version_while_the_hour_is_rerun(
    generated_hour, tmp_path, lake_url
):
    full, smaller = two_landings(generated_hour, tmp_path)
    process_hour(str(full), lake_url, parse_hour(HOUR))
    lake = Lake(lake_url)
    seen: dict[str, dict] = {}
    stop, errors = threading.Event(), []

    def read_in_a_loop() -> None:
        while not stop.is_set():
            try:
                version, rows = whole_version(Lake(lake_url))
                seen[version] = rows
            except BaseException as error:
                errors.append(error)
                return

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    versions = [whole_version(lake)[0]]
    full_types = len(whole_version(lake)[1])
    for rerun in range(8):  # until the reader has read two versions (at least three re-runs)
        process_hour(str(smaller if rerun % 2 == 0 else full), lake_url, parse_hour(HOUR))
        versions.append(whole_version(lake)[0])
        if rerun >= 2 and len(seen) >= 2:
            break
    time.sleep(0.2)
    stop.set()
    reader.join()
    assert not errors, errors[0]
    assert len(seen) >= 2 and set(seen) <= set(versions)
    assert {len(rows) for rows in seen.values()} <= {full_types, full_types - 1}


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_of_process_never_shows_a_partial_hour(
    generated_hour, tmp_path, lake_url
):
    full, smaller = two_landings(generated_hour, tmp_path)
    env = {"CURRENTS_RELAY_LEASE_SECONDS": "2", "CURRENTS_RELAY_LEASE_WAIT_SECONDS": "30"}
    started = time.monotonic()
    assert run_process(full, lake_url, **env).returncode == 0
    duration = time.monotonic() - started
    lake = Lake(lake_url)
    live = {whole_version(lake)[0]}
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    chooser = random.Random(seed)
    points = [round(chooser.uniform(0.3, 1.1) * duration, 3) for _ in range(14)]
    print(f"SIGKILL seed {seed}; points (s after start): {points}")
    stop, errors, reads = threading.Event(), [], [0]

    def read_in_a_loop() -> None:
        while not stop.is_set():
            try:
                live.add(whole_version(Lake(lake_url))[0])
                reads[0] += 1
            except BaseException as error:
                errors.append(error)
                return

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        for i, point in enumerate(points):
            landing = smaller if i % 2 else full
            command = [*CLI, "process", "--landing", str(landing), "--lake", lake_url]
            run = subprocess.Popen(
                [*command, "--hour", HOUR],
                cwd=ROOT,
                env=os.environ | env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(point)
            os.kill(run.pid, signal.SIGKILL)
            run.wait()
            whole_version(lake)
    finally:
        stop.set()
        reader.join()
    assert not errors, f"seed {seed}: {errors[0]}"
    assert reads[0] > 20
    # The next run takes the dead runs' lease once it expires, and removes their files.
    done = run_process(full, lake_url, CURRENTS_RELAY_GRACE_SECONDS="0", **env)
    assert done.returncode == 0, done.stderr[-2000:]
    committed = read_committed(lake, HOUR)
    assert {version_of(f) for f in hour_version_files(lake, HOUR)} == {committed.version}
    assert whole_version(lake)[1] == json.loads(done.stdout)["by_event_type"]


def test_two_process_runs_started_together_commit_whole_versions_one_after_the_other(
    generated_hour, tmp_path, lake_url
):
    full, smaller = two_landings(generated_hour, tmp_path)
    command = [*CLI, "process", "--lake", lake_url, "--hour", HOUR]
    runs = [
        subprocess.Popen(
            [*command, "--landing", str(landing)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for landing in (full, smaller)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    reports = [json.loads(out) for out, _ in outputs]
    lake = Lake(lake_url)
    version, rows = whole_version(lake)
    last = next(r for r in reports if r["version"] == version)
    first = next(r for r in reports if r["version"] != version)
    assert rows == last["by_event_type"] != first["by_event_type"]
    superseded = read_committed(lake, HOUR).manifest["superseded"]
    assert [s["version"] for s in superseded] == [first["version"]]  # committed in turn
    report = json.loads(lake.fs.cat_file(lake.path(f"reports/hour={HOUR}.json")))
    assert report["version"] == version and report["events"] == last["events"]
    waited = [err for _, err in outputs if "waiting for process" in err]
    assert len(waited) == 1  # the second run waited for the first one's lease


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")


def test_a_full_disk_during_a_commit_keeps_the_previous_version_and_leaves_nothing(tmp_path):
    from currents_relay.tools.generator import generate_hour

    small, large = tmp_path / "small", tmp_path / "large"
    generate_hour(str(small), parse_hour(HOUR), events=2_000, seed=3, faults=False)
    generate_hour(str(large), parse_hour(HOUR), events=60_000, seed=4, faults=False)  # ~8 MB
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4m")
    try:
        lake_url = str(disk / "lake")
        first = process_hour(str(small), lake_url, parse_hour(HOUR))
        lake = Lake(lake_url)
        before = whole_version(lake)
        files_before = sorted(hour_version_files(lake, HOUR))
        with pytest.raises(OSError, match=r"is full: hour .* was not committed"):
            process_hour(str(large), lake_url, parse_hour(HOUR))
        assert whole_version(lake) == before and before[1] == first["by_event_type"]
        assert sorted(hour_version_files(lake, HOUR)) == files_before  # none of the failed run's
        assert process_hour(str(small), lake_url, parse_hour(HOUR))["events"] == first["events"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
