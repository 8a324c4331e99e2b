"""
### currents_replay: redeliver what a destination has not acknowledged

Manual only. For one destination and an hour range, sends every event of the lake that the
destination's ledger does not hold yet: events left pending (a partner down for days, broken
credentials now fixed, a retry budget used up) and, unless `dead_letters` is off, the events
the partner refused earlier. The ledger makes it safe to run any number of times: an
acknowledged event is never sent again, unless `resend_acknowledged` asks for it (for
partners that accept first and check later: Treasure Data answers 200 even for a wrong write
key, so after fixing the key the hour must be sent again; such sends are recorded as resent).

Params: `destination`, `from_hour`, `to_hour` (default: `from_hour`), `dead_letters`,
`resend_acknowledged`. Only hours with a committed version are walked.
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
        "resend_acknowledged": Param(
            False,
            type="boolean",
            description="Also send again what the destination acknowledged (e.g. Treasure Data "
            "after a wrong write key); recorded as resent",
        ),
    },
)
def currents_replay():
    @task
    def replay(destination: str) -> list[dict]:
        """Redeliver pending events (and dead letters) of the hour range to one destination."""
        import json

        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
        from airflow.sdk.log import mask_secret

        from currents_relay.delivery.engine import DeliveryStopped
        from currents_relay.delivery.partner import Endpoint
        from currents_relay.delivery.replay import replay_hours
        from currents_relay.hours import parse_hour

        params = get_current_context()["params"]
        if params["destination"] != destination:
            raise AirflowSkipException(f"this replay is for {params['destination']}")
        lake = Variable.get("currents_lake_url", default=DEFAULT_LAKE)
        endpoint = Endpoint.from_connection(Connection.get(f"currents_{destination}"))
        first = parse_hour(params["from_hour"])
        last = parse_hour(params["to_hour"]) if params.get("to_hour") else first
        results = []
        try:
            for counts in replay_hours(
                lake,
                destination,
                endpoint,
                first,
                last,
                dead_letters=bool(params["dead_letters"]),
                resend_acknowledged=bool(params.get("resend_acknowledged")),
                mask=mask_secret,
            ):
                print(json.dumps(counts))
                results.append(counts)
        except DeliveryStopped as stopped:
            raise AirflowFailException(str(stopped)) from None
        failed = [c["hour"] for c in results if c.get("error")]
        if failed:  # a retry of the task may deliver them
            raise RuntimeError(
                f"{destination}: {len(failed)} hour(s) not fully delivered ({', '.join(failed[:5])}"
                f"{', ...' if len(failed) > 5 else ''}): their events stay pending"
            )
        return results

    for name in DESTINATIONS:
        replay.override(task_id=f"replay_{name}", pool=f"currents_{name}")(name)


currents_replay()
