"""Replay: the CLI and the manual DAG redeliver pending events and dead letters, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from currents_relay.delivery.engine import DeliveryStopped
from tests.conftest import HOUR, ROOT
from tests.delivery.conftest import EXTRA, endpoint
from tests.delivery.test_contract import deliver


def conn_env(sandbox, name: str) -> dict[str, str]:
    value = json.dumps(
        {
            "conn_type": "http",
            "host": sandbox.urls()[name],
            "password": sandbox.sims[name].secret,
            "extra": EXTRA.get(name, {}),
        }
    )
    return {f"AIRFLOW_CONN_CURRENTS_{name.upper()}": value}


def poison_one(lake, sandbox, name) -> str:
    rows = pq.read_table(lake / "events" / "event_type=users.messages.sms.Send").to_pylist()
    target = next(r["id"] for r in rows if r["external_user_id"])
    sandbox.sims[name].poison = {target}
    return target


def test_cli_replay_delivers_pending_and_dead_letters(lake, sandbox):
    name = "zeotap"
    poison_one(lake, sandbox, name)
    first = deliver(lake, sandbox, name).run()
    assert first["dead_lettered"] == 1
    sandbox.sims[name].poison = set()
    sandbox.sims[name].credentials_valid = False
    env = os.environ | conn_env(sandbox, name)
    command = [
        sys.executable,
        "-m",
        "currents_relay.cli",
        "replay",
        "--lake",
        str(lake),
        "--destination",
        name,
        "--hour",
        HOUR,
    ]
    refused = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert sandbox.sims[name].secret not in refused.stderr + refused.stdout
    sandbox.sims[name].credentials_valid = True
    (failed,) = json.loads(refused.stdout)["hours"]
    assert failed["pending"] > 0 and "HTTP 401" in failed["error"]  # counts, also on failure
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    (counts,) = json.loads(done.stdout)["hours"]  # one JSON document, nothing else
    assert counts["delivered"] == counts["selected"] and counts["dead_lettered"] == 0
    assert counts["requests"] == 1 and sandbox.sims[name].stats()["duplicates"] == 0


def test_cli_push_writes_one_json_document_to_stdout_and_its_logs_to_stderr(lake, sandbox):
    name = "custom_http"
    command = [sys.executable, "-m", "currents_relay.cli", "push", "--lake", str(lake)]
    command += ["--destination", name, "--hour", HOUR]
    env = os.environ | conn_env(sandbox, name)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    counts = json.loads(done.stdout)
    assert counts["delivered"] == counts["selected"] > 0 and counts["pending"] == 0
    assert counts["requests"] == sandbox.sims[name].stats()["requests"]
    progress = [line for line in done.stderr.splitlines() if f"{name}: done:" in line]
    assert len(progress) == 1 and f"{counts['delivered']} of {counts['selected']}" in progress[0]
    assert len(done.stderr.splitlines()) < 20  # progress lines, never one per batch
    assert sandbox.sims[name].secret not in done.stderr


def test_cli_push_without_a_connection_is_a_one_line_error(lake):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "currents_relay.cli",
            "push",
            "--lake",
            str(lake),
            "--destination",
            "zeotap",
            "--hour",
            HOUR,
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "currents_zeotap" in done.stderr
    assert done.stderr.strip().count("\n") == 0


@pytest.mark.airflow
def test_replay_dag_redelivers_after_credentials_are_fixed(airflow_db, lake, sandbox, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from currents_relay.delivery.push import push_hour

    name = "custom_http"
    sandbox.sims[name].credentials_valid = False
    with pytest.raises(DeliveryStopped):  # the hour's report records the failed push
        push_hour(str(lake), HOUR, name, endpoint(sandbox, name))
    sandbox.sims[name].credentials_valid = True
    monkeypatch.setenv("AIRFLOW_VAR_CURRENTS_LAKE_URL", str(lake))
    for key, value in conn_env(sandbox, name).items():
        monkeypatch.setenv(key, value)
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["currents_replay"]
    # No destinations given: the replay picks the one whose hour has pending events.
    run = dag.test(run_conf={"from_hour": HOUR})
    assert run.state == "success"
    replays = [ti for ti in run.get_task_instances() if ti.task_id == "replay"]
    assert [(ti.map_index, ti.state) for ti in replays] == [(0, "success")]
    assert (
        sandbox.sims[name].stats()["unique_events"]
        == deliver(lake, sandbox, name).run()["delivered"]
    )
    # Nothing left to replay: the mapped task has no instance to run.
    again = dag.test(run_conf={"from_hour": HOUR})
    assert again.state == "success"
    assert [ti.state for ti in again.get_task_instances() if ti.task_id == "replay"] in (
        [],
        ["skipped"],
    )


def test_endpoint_of_every_partner_refuses_an_incomplete_connection(sandbox):
    from dataclasses import replace

    from currents_relay.delivery.partner import ConfigurationError
    from currents_relay.delivery.push import build_partner
    from currents_relay.destinations import destinations

    td = endpoint(sandbox, "treasure_data")
    with pytest.raises(ConfigurationError, match=r"extra\.table"):
        build_partner(
            destinations()["treasure_data"],
            replace(td, extra={"database": "db", "table": "bad-name"}),
        )
    with pytest.raises(ConfigurationError, match="bearer token"):
        build_partner(destinations()["zeotap"], replace(endpoint(sandbox, "zeotap"), password=None))
