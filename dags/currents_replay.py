"""
### currents_replay: redeliver what a destination has not acknowledged

Manual only. For one destination and an hour range, sends every event of the lake that the
destination's ledger does not hold yet: events left pending (a partner down for days, broken
credentials now fixed, a retry budget used up) and, unless `dead_letters` is off, the events
the partner refused earlier. The ledger makes it safe to run any number of times: an
acknowledged event is never sent again.

Params: `destination`, `from_hour`, `to_hour` (default: `from_hour`), `dead_letters`.
The same as `currents-relay replay --lake URL --destination NAME --hour H --to-hour H2`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Connection, Param, Variable, dag, get_current_context, task

from currents_relay.destinations import enabled_destinations
from currents_relay.hours import HOUR_PATTERN

DESTINATIONS = [d.name for d in enabled_destinations()]
DEFAULT_LAKE = str(Path(__file__).resolve().parents[1] / "data" / "lake")


@dag(
    dag_id="currents_replay",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["currents", "braze", "replay"],
    default_args={"owner": "currents-relay", "retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "destination": Param(DESTINATIONS[0], type="string", enum=DESTINATIONS),
        "from_hour": Param(
            "2026-11-01T10", type="string", pattern=HOUR_PATTERN, description="First UTC hour"
        ),
        "to_hour": Param(
            None, type=["null", "string"], pattern=HOUR_PATTERN, description="Last UTC hour"
        ),
        "dead_letters": Param(
            True, type="boolean", description="Also redeliver dead-lettered events"
        ),
    },
)
def currents_replay():
    @task
    def replay(destination: str) -> list[dict]:
        """Redeliver pending events (and dead letters) of the hour range to one destination."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
        from airflow.sdk.log import mask_secret

        from currents_relay.delivery.engine import DeliveryStopped
        from currents_relay.delivery.partner import Endpoint
        from currents_relay.delivery.push import push_hour
        from currents_relay.hours import hour_key, hour_range, parse_hour

        params = get_current_context()["params"]
        if params["destination"] != destination:
            raise AirflowSkipException(f"this replay is for {params['destination']}")
        lake = Variable.get("currents_lake_url", default=DEFAULT_LAKE)
        endpoint = Endpoint.from_connection(Connection.get(f"currents_{destination}"))
        first = parse_hour(params["from_hour"])
        last = parse_hour(params["to_hour"]) if params.get("to_hour") else first
        results = []
        for hour in hour_range(first, last):
            try:
                results.append(
                    push_hour(
                        lake,
                        hour_key(hour),
                        destination,
                        endpoint,
                        replay=bool(params["dead_letters"]),
                        mask=mask_secret,
                    )
                )
            except DeliveryStopped as stopped:
                raise AirflowFailException(str(stopped)) from None
        return results

    for name in DESTINATIONS:
        replay.override(task_id=f"replay_{name}", pool=f"currents_{name}")(name)


currents_replay()
