"""Push one hour to one destination: what the `push_<name>` tasks, the replay DAG and the CLI call."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from currents_relay.delivery.engine import Delivery, RetryPolicy, Selection
from currents_relay.delivery.ledger import Ledger
from currents_relay.delivery.partner import Endpoint, Partner
from currents_relay.destinations import Destination, destinations
from currents_relay.lake import Lake


def connection_outside_tasks(conn_id: str) -> Any:
    """An Airflow Connection for the CLI: `AIRFLOW_CONN_<ID>` (JSON or URI), else Airflow's DB."""
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if value:
        from airflow.sdk import Connection

        if value.lstrip().startswith("{"):
            return Connection.from_json(value, conn_id=conn_id)
        return Connection.from_uri(value, conn_id=conn_id)
    try:
        from airflow.models.connection import Connection as StoredConnection

        return StoredConnection.get_connection_from_secrets(conn_id)
    except Exception:
        raise LookupError(
            f"connection {conn_id} is not defined: set AIRFLOW_CONN_{conn_id.upper()} or add it to Airflow"
        ) from None


def build_partner(destination: Destination, endpoint: Endpoint) -> Partner:
    return destination.partner_class()(endpoint, destination.options)


def push_hour(
    lake_url: str,
    hour: str,
    name: str,
    endpoint: Endpoint,
    *,
    dry_run: bool = False,
    replay: bool = False,
    mask: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Deliver `hour` of the lake to destination `name`; returns its counts.

    Raises `DeliveryStopped` (401/403/404) or `DeliveryIncomplete` (retry budget used up)
    after recording the counts; undelivered events stay pending for a re-run or replay.
    """
    destination = destinations()[name]
    partner = build_partner(destination, endpoint)
    for secret in partner.secrets() if mask else ():
        mask(secret)
    options = destination.options
    policy = RetryPolicy(budget_seconds=float(options.get("budget_seconds", 300)))
    kwargs = {"sleep": sleep} if sleep else {}
    delivery = Delivery(
        lake_url,
        hour,
        partner,
        Selection.from_options(options),
        policy,
        dry_run=dry_run,
        replay=replay,
        **kwargs,
    )
    return delivery.run()


def last_counts(lake_url: str, hour: str, name: str) -> dict[str, Any] | None:
    """The counts the latest push of `name` for `hour` recorded (also when it failed)."""
    runs = Ledger(Lake(lake_url), name, hour).runs()
    return runs[-1] if runs else None
