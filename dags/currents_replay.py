"""
### currents_replay: redeliver what destinations have not acknowledged

Manual only. For an hour range, sends every event of the lake that a destination's ledger
does not hold yet: events left pending (a partner down for days, broken credentials now
fixed, a retry budget used up) and, unless `dead_letters` is off, the events the partner
refused earlier. The ledger makes it safe to run any number of times: an acknowledged event is
never sent again, unless `resend_acknowledged` asks for it (for partners that accept first and
check later: Treasure Data answers 200 even for a wrong write key, so after fixing the key the
hour must be sent again; such sends are recorded as resent).

Params: `from_hour` (default: 23 hours before `to_hour`), `to_hour` (default: `from_hour` when
that is given, else the last complete hour), `destinations` (default: those whose hours in
the range have pending events, dead letters or a failed push), `dead_letters`,
`resend_acknowledged`. **plan** picks the destinations; **replay** runs once per destination
(mapped), each under its push lease. Only hours with a committed version are walked. The same
as `currents-relay replay --lake URL --destination NAME --hour H --to-hour H2`.
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
        "from_hour": Param(
            None,
            type=["null", "string"],
            pattern=HOUR_PATTERN,
            description="First UTC hour, e.g. 2026-11-01T10 (default: 23 hours before to_hour)",
        ),
        "to_hour": Param(
            None,
            type=["null", "string"],
            pattern=HOUR_PATTERN,
            description="Last UTC hour (default: from_hour if given, else the last complete hour)",
        ),
        "destinations": Param(
            [],
            type="array",
            items={"type": "string", "enum": DESTINATIONS},
            description="Destinations to replay (default: those with pending events, dead "
            "letters or a failed push in the range)",
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
    @task(retries=0)
    def plan() -> list[dict]:
        """The hour range and the destinations to replay, one job each."""
        from datetime import UTC

        from currents_relay.delivery.replay import needing_replay
        from currents_relay.hours import hour_key, parse_hour

        params = get_current_context()["params"]
        if params.get("to_hour"):
            last = parse_hour(params["to_hour"])
        elif params.get("from_hour"):
            last = parse_hour(params["from_hour"])
        else:
            now = datetime.now(UTC)
            last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        first = (
            parse_hour(params["from_hour"])
            if params.get("from_hour")
            else last - timedelta(hours=23)
        )
        if first > last:
            raise ValueError(f"from_hour {hour_key(first)} is after to_hour {hour_key(last)}")
        chosen = list(params.get("destinations") or []) or needing_replay(
            _lake(), first, last, dead_letters=bool(params["dead_letters"])
        )
        print(
            f"replaying {hour_key(first)} .. {hour_key(last)} to "
            f"{', '.join(chosen) or 'no destination (none has pending events or dead letters)'}"
        )
        return [
            {"destination": name, "from_hour": hour_key(first), "to_hour": hour_key(last)}
            for name in chosen
        ]

    @task(map_index_template="{{ task.op_kwargs['job']['destination'] }}")
    def replay(job: dict) -> list[dict]:
        """Redeliver pending events (and dead letters) of the hour range to one destination."""
        import json

        from airflow.sdk.exceptions import AirflowFailException
        from airflow.sdk.log import mask_secret

        from currents_relay.delivery.engine import DeliveryStopped
        from currents_relay.delivery.partner import Endpoint
        from currents_relay.delivery.replay import replay_hours
        from currents_relay.hours import parse_hour

        params = get_current_context()["params"]
        destination = job["destination"]
        endpoint = Endpoint.from_connection(Connection.get(f"currents_{destination}"))
        results = []
        try:
            for counts in replay_hours(
                _lake(),
                destination,
                endpoint,
                parse_hour(job["from_hour"]),
                parse_hour(job["to_hour"]),
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

    replay.expand(job=plan())


def _lake() -> str:
    return Variable.get("currents_lake_url", default=DEFAULT_LAKE)


currents_replay()
