"""Push one hour to one destination: what the `push_<name>` tasks, the replay DAG and the CLI call."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from currents_relay.delivery.engine import (
    Delivery,
    DeliveryError,
    DeliveryInterrupted,
    RetryPolicy,
    Selection,
)
from currents_relay.delivery.partner import Endpoint, Partner
from currents_relay.destinations import Destination, destinations
from currents_relay.lake import Lake
from currents_relay.lake.leases import Lease, LeaseSettings, wait_until_free
from currents_relay.lake.reports import read_parts, write_part, write_report
from currents_relay.lake.versions import Committed, require_committed

log = logging.getLogger(__name__)
# A push that finds the hour committed again once it is done pushes the new version's
# remaining events; a `process` re-run each time it finishes would otherwise never let go.
VERSION_PASSES = 3


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
    resend_acknowledged: bool = False,
    mask: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    lease: LeaseSettings | None = None,
) -> dict[str, Any]:
    """Deliver the committed `hour` of the lake to destination `name`; returns its counts.

    Holds the lease `push-<name>` of the hour throughout (a second push or replay of the
    same hour and destination waits for it, bounded, then raises `LeaseHeld`) and first
    waits for a `process` of the hour to commit. A push reads one committed version whole;
    where `process` committed a newer one meanwhile, it pushes that one's remaining events
    too, so it never reports a part of the hour as complete. Writes the destination's part
    of the hour's report, and the merged report, under the lease.

    Raises `NotProcessed` (no committed version), `DeliveryStopped` (401/403/404),
    `DeliveryIncomplete` (retry budget used up) or `DeliveryInterrupted` (lease lost), after
    recording the counts; undelivered events stay pending for a re-run or replay.
    """
    destination = destinations()[name]
    partner = build_partner(destination, endpoint)
    for secret in partner.secrets() if mask else ():
        mask(secret)
    options = destination.options
    policy = RetryPolicy(budget_seconds=float(options.get("budget_seconds", 300)))
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep else {}
    lake = Lake(lake_url)

    def deliver(committed: Committed | None, held: Lease | None) -> Delivery:
        return Delivery(
            lake_url,
            hour,
            partner,
            Selection.from_options(options),
            policy,
            dry_run=dry_run,
            replay=replay,
            resend_acknowledged=resend_acknowledged,
            committed=committed,
            lease=held,
            **kwargs,
        )

    if dry_run:
        return deliver(None, None).run()
    settings = lease or LeaseSettings.from_env()
    purpose = f"{'replay' if replay or resend_acknowledged else 'push'} of {name}"
    with Lease(lake, hour, f"push-{name}", purpose, settings) as held:
        wait_until_free(lake, hour, "process", settings)
        committed = require_committed(lake, hour)
        for _ in range(VERSION_PASSES):
            delivery = deliver(committed, held)
            try:
                counts = delivery.run()
            except DeliveryError:
                if delivery.report is not None and held.holds():
                    write_part(lake, hour, name, delivery.report)
                    write_report(lake, hour)
                raise
            latest = require_committed(lake, hour)
            if latest.version == committed.version:
                break
            log.info(
                "%s: hour %s was committed again during the push (version %s): pushing its "
                "remaining events",
                name,
                hour,
                latest.version,
            )
            committed = latest
            resend_acknowledged = False  # acknowledged on purpose once is enough
        if not held.holds():
            raise DeliveryInterrupted(f"{name}: hour {hour}: lost the lease before the report")
        write_part(lake, hour, name, counts)
        write_report(lake, hour)
    return counts


def last_counts(lake_url: str, hour: str, name: str) -> dict[str, Any]:
    """The counts the latest push of `name` for `hour` recorded (also when it failed); only
    the destination and hour where none was recorded."""
    return read_parts(Lake(lake_url), hour).get(name) or {"destination": name, "hour": hour}
