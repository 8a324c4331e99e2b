"""Exactly once across runs: pushes of one (hour, destination) never overlap, a killed one's
lease expires, a stalled one keeps it, one that lost it stops; a push never reports part of
an hour that `process` is replacing as complete; Treasure Data's blind 200s can be undone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from currents_relay.delivery.engine import DeliveryInterrupted
from currents_relay.delivery.push import push_hour
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseHeld, LeaseSettings
from currents_relay.lake.reports import read_report
from currents_relay.lake.versions import read_committed
from tests.conftest import HOUR, ROOT
from tests.delivery.conftest import endpoint
from tests.delivery.test_replay import conn_env

NAME = "custom_http"  # 100 events a request: many requests, so runs overlap
SLOW = 0.05  # seconds the sandbox adds to every answer
ONE_AT_A_TIME = {"max_in_flight": 1}
CLI = [sys.executable, "-m", "currents_relay.cli"]


@pytest.fixture(params=["local", "s3"])
def any_lake(request, lake) -> str:
    """The ingested hour's lake on a local disk, or copied to the local S3 server."""
    if request.param == "local":
        return str(lake)
    url = request.getfixturevalue("s3_lake")
    target = Lake(url)
    for path in Path(lake).rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            target.fs.pipe_file(target.path(str(path.relative_to(lake))), path.read_bytes())
    return url


def push(url: str, sandbox, name: str = NAME, settings=None, **extra) -> dict:
    return push_hour(
        url,
        HOUR,
        name,
        endpoint(sandbox, name, **extra),
        lease=settings or LeaseSettings(ttl=5, wait=60),
    )


def test_two_pushes_started_together_send_no_event_twice(any_lake, sandbox):
    sandbox.sims[NAME].set_network(SLOW, None)
    results, errors = [], []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(push(any_lake, sandbox, **ONE_AT_A_TIME))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    stats = sandbox.sims[NAME].stats()
    assert stats["duplicates"] == 0
    first, second = sorted(results, key=lambda counts: -counts["requests"])
    assert first["delivered"] == first["selected"] == stats["unique_events"] > 1_000
    assert second["requests"] == 0 and second["delivered"] == first["selected"]  # it waited


def test_a_killed_push_leaves_a_lease_that_expires_and_the_next_run_delivers_the_rest(
    any_lake, sandbox
):
    sandbox.sims[NAME].set_network(SLOW, None)
    connection = json.loads(conn_env(sandbox, NAME)[f"AIRFLOW_CONN_CURRENTS_{NAME.upper()}"])
    connection["extra"] = ONE_AT_A_TIME
    env = os.environ | {
        f"AIRFLOW_CONN_CURRENTS_{NAME.upper()}": json.dumps(connection),
        "CURRENTS_RELAY_LEASE_SECONDS": "8",
        "CURRENTS_RELAY_LEASE_WAIT_SECONDS": "30",
    }
    command = [sys.executable, "-m", "currents_relay.cli", "push", "--lake", any_lake]
    command += ["--destination", NAME, "--hour", HOUR]
    killed = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sandbox.sims[NAME].stats()["requests"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    sent = sandbox.sims[NAME].stats()["unique_events"]
    held = subprocess.run(
        command,
        cwd=ROOT,
        env=env | {"CURRENTS_RELAY_LEASE_WAIT_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert held.returncode == 1 and f"held by push of {NAME}" in held.stderr
    assert f"pid {killed.pid}" in held.stderr and "since" in held.stderr
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout)
    stats = sandbox.sims[NAME].stats()
    assert 0 < sent < counts["selected"] == counts["delivered"] == stats["unique_events"]
    assert stats["duplicates"] <= 100  # at most the one batch in flight when it was killed


def test_a_push_waiting_out_a_long_retry_after_keeps_its_lease(lake, sandbox):
    sim = sandbox.sims[NAME]
    sim.faults.next, sim.faults.statuses, sim.faults.retry_after = 1, [429], 4
    settings = LeaseSettings(ttl=1.5, wait=0)
    result: dict = {}
    pushing = threading.Thread(
        target=lambda: result.update(push(str(lake), sandbox, settings=settings))
    )
    pushing.start()
    time.sleep(2.5)  # the push sleeps through Retry-After, past its lease's time to live
    with pytest.raises(LeaseHeld, match=f"held by push of {NAME}"):
        Lease(Lake(str(lake)), HOUR, f"push-{NAME}", "another push", settings).acquire()
    pushing.join()
    assert result["delivered"] == result["selected"] == sim.stats()["unique_events"]
    assert sim.stats()["duplicates"] == 0


def test_a_push_that_lost_its_lease_stops_before_sending_again(lake, sandbox):
    sandbox.sims[NAME].set_network(SLOW, None)
    settings = LeaseSettings(ttl=1.0, wait=0)
    errors: list[BaseException] = []
    frozen = threading.Event()
    original_renew = Lease.renew

    def renew(self) -> bool:  # the push's renewals stop, as in a frozen worker
        return False if frozen.is_set() and "push" in self.holder else original_renew(self)

    def run() -> None:
        try:
            push(str(lake), sandbox, settings=settings, **ONE_AT_A_TIME)
        except BaseException as error:
            errors.append(error)

    Lease.renew = renew
    try:
        pushing = threading.Thread(target=run)
        pushing.start()
        time.sleep(0.5)
        frozen.set()
        taker = Lease(Lake(str(lake)), HOUR, f"push-{NAME}", "taker", LeaseSettings(5, 10))
        taker.acquire()
        requests_at_takeover = sandbox.sims[NAME].stats()["requests"]
        pushing.join(30)
        taker.release()
    finally:
        Lease.renew = original_renew
    assert len(errors) == 1 and isinstance(errors[0], DeliveryInterrupted)
    assert "lost" in str(errors[0])
    assert sandbox.sims[NAME].stats()["requests"] <= requests_at_takeover + 1  # the one in flight


def test_a_push_started_while_process_commits_sends_the_whole_new_hour(
    generated_hour, tmp_path, sandbox
):
    source, _ = generated_hour
    full, smaller = tmp_path / "full", tmp_path / "smaller"
    shutil.copytree(source, full)
    shutil.copytree(source, smaller)
    for folder in smaller.rglob("event_type=users.messages.sms.*"):
        shutil.rmtree(folder)
    lake = str(tmp_path / "lake")
    process_hour(str(smaller), lake, parse_hour(HOUR))
    rerun = subprocess.Popen(
        [*CLI, "process", "--landing", str(full), "--lake", lake, "--hour", HOUR],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (Path(lake) / "_leases" / f"hour={HOUR}" / "process.json").exists():
        assert time.monotonic() < deadline and rerun.poll() is None
        time.sleep(0.01)
    counts = push(lake, sandbox)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err[-2000:]
    new = read_committed(Lake(lake), HOUR)
    assert counts["version"] == new.version == json.loads(out)["version"]
    assert counts["delivered"] == counts["selected"] == sandbox.sims[NAME].stats()["unique_events"]
    assert counts["pending"] == 0 and any("sms" in t for t in new.event_files())
    assert counts["considered"] == new.manifest["events"]["written"]


def test_treasure_data_with_a_wrong_key_then_fixed_is_sent_again_on_purpose(lake, sandbox):
    name, sim = "treasure_data", sandbox.sims["treasure_data"]
    sim.credentials_valid = False  # TD answers 200 and drops the rows later
    blind = push(str(lake), sandbox, name)
    assert blind["delivered"] == blind["accepted_only"] == blind["selected"] > 0
    assert blind["confirmed"] == 0 and "not proof of import" in blind["note"]
    assert sim.stats()["unique_events"] == 0 and sim.stats()["discarded"] == blind["selected"]
    sim.credentials_valid = True
    assert push(str(lake), sandbox, name)["requests"] == 0  # the ledger says delivered
    connection = conn_env(sandbox, name)
    value = json.loads(connection[f"AIRFLOW_CONN_CURRENTS_{name.upper()}"])
    value["extra"] = {"database": "currents", "table": "events"}
    done = subprocess.run(
        [
            *CLI,
            "replay",
            "--lake",
            str(lake),
            "--destination",
            name,
            "--hour",
            HOUR,
            "--resend-acknowledged",
        ],
        cwd=ROOT,
        env=os.environ | {f"AIRFLOW_CONN_CURRENTS_{name.upper()}": json.dumps(value)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (counts,) = json.loads(done.stdout)["hours"]
    assert sim.stats()["unique_events"] == counts["selected"] == blind["selected"]
    assert (
        counts["resent"]["this_run"] == counts["selected"]
        and counts["delivered"] == counts["selected"]
    )
    report = read_report(Lake(str(lake)), HOUR)
    part = report["destinations"][name]
    assert part["resent"]["this_run"] == counts["selected"] and part["accepted_only"] > 0
    assert "not proof of import" in part["note"]
    again = push(str(lake), sandbox, name)  # an ordinary push afterwards sends nothing
    assert again["requests"] == 0 and again["resent"]["earlier_runs"] == counts["selected"]


def test_the_hours_report_merges_every_destinations_latest_push(lake, sandbox):
    first = push(str(lake), sandbox, "zeotap")
    second = push(str(lake), sandbox, "rudderstack")
    report = read_report(Lake(str(lake)), HOUR)
    assert set(report["destinations"]) == {"zeotap", "rudderstack"}
    assert report["destinations"]["zeotap"]["delivered"] == first["delivered"]
    assert report["destinations"]["rudderstack"]["delivered"] == second["delivered"]
    assert (
        report["version"] == first["version"] and "updated_at" in report["destinations"]["zeotap"]
    )
    assert report["events"]["written"] == first["considered"]


def test_a_push_of_an_hour_never_processed_fails_clearly_and_an_empty_hour_is_fine(
    tmp_path, sandbox
):
    lake = str(tmp_path / "lake")
    command = [sys.executable, "-m", "currents_relay.cli", "push", "--lake", lake]
    command += ["--destination", NAME, "--hour", HOUR]
    env = os.environ | conn_env(sandbox, NAME)
    never = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert never.returncode == 1 and "never processed" in never.stderr
    empty = tmp_path / "landing"
    empty.mkdir()
    assert process_hour(str(empty), lake, parse_hour(HOUR))["events"]["read"] == 0
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["selected"] == 0


def test_a_replay_over_centuries_walks_only_the_committed_hours(lake, sandbox):
    command = [sys.executable, "-m", "currents_relay.cli", "replay", "--lake", str(lake)]
    command += ["--destination", NAME, "--hour", "1970-01-01T00", "--to-hour", "2999-12-31T23"]
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=os.environ | conn_env(sandbox, NAME),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [c["hour"] for c in json.loads(done.stdout)["hours"]] == [HOUR]
    assert time.monotonic() - started < 30
