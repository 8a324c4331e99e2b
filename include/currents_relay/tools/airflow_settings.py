"""Load `airflow_settings.yaml` (the Astro CLI format) into a local Airflow, without the Astro CLI.

The scheduler never runs a task whose pool does not exist (`dag.test()` hides that), so
`make run` loads the pools, connections and variables first. Runs where Airflow's metadata
database is reachable (a local `AIRFLOW_HOME`), never inside a task.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml


def read_settings(path: Path) -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load(path.read_text()) or {}
    airflow = data.get("airflow", {}) or {}
    return {key: list(airflow.get(key) or []) for key in ("connections", "pools", "variables")}


def load_settings(path: Path, project: Path | None = None) -> dict[str, int]:
    """Create or update every connection, pool and variable; returns how many of each.

    Relative local paths in variables (`data/lake`) are made absolute against `project`.
    """
    home = os.environ.get("AIRFLOW_HOME")
    if not home or not Path(home).is_dir():
        raise ValueError(
            "load-settings writes into the Airflow that AIRFLOW_HOME names, and AIRFLOW_HOME "
            f"is {'not set' if not home else 'not a folder: ' + home}: for this project run "
            "`make airflow`, or `export AIRFLOW_HOME=$PWD/.airflow` and `airflow db migrate` first"
        )
    from sqlalchemy.exc import OperationalError

    settings = read_settings(path)
    try:
        return _load(settings, project or path.resolve().parent)
    except OperationalError as error:
        raise ValueError(
            f"the metadata database of AIRFLOW_HOME={home} is not ready "
            f"({str(error.orig)[:120]}): run `airflow db migrate` first"
        ) from None


def _load(settings: dict[str, list[dict[str, Any]]], base: Path) -> dict[str, int]:
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for item in settings["connections"]:
            conn_id = item["conn_id"]
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            extra = item.get("conn_extra")
            session.add(
                Connection(
                    conn_id=conn_id,
                    conn_type=item.get("conn_type", "http"),
                    host=item.get("conn_host"),
                    login=item.get("conn_login"),
                    password=item.get("conn_password"),
                    port=item.get("conn_port"),
                    schema=item.get("conn_schema"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
        for item in settings["pools"]:
            Pool.create_or_update_pool(
                item["pool_name"],
                int(item.get("pool_slot", 1)),
                item.get("pool_description", ""),
                include_deferred=False,
                session=session,
            )
    for item in settings["variables"]:
        value = str(item.get("variable_value", ""))
        if value and "://" not in value and not value.startswith("/"):
            value = str((base / value).resolve())
        Variable.set(item["variable_name"], value)
    return {key: len(items) for key, items in settings.items()}
