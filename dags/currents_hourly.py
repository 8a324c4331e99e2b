"""
### currents_hourly: one hour of Braze Currents exports -> a validated Parquet lake

Each run owns one UTC hour `[h, h+1)`: the `hour` param if given, else the run's
`data_interval_start`. **resolve** names it first (a manual run with neither fails there, at
once, saying so); the run then waits `settle_minutes` after the hour ends (a deferrable
sensor, no wait when `hour` is given) so Currents can finish writing, then:

1. **collect** lists the hour's files in the landing zone (both formats); an hour without files
   is a warning in the log and the report (or a failure with `require_files`),
2. **ingest** normalizes, validates (Great Expectations suites per event family), quarantines
   bad rows with their reasons, drops duplicates and writes the hour into the lake, replacing
   it exactly (re-runs and backfills are safe),
3. **push_<destination>**, one task per enabled destination (own pool `currents_<name>`),
   sends the hour to the partner with its wire format, limits and retry rules; every
   acknowledged batch goes to the destination's ledger in the lake first, so retries and
   re-runs never re-send an acknowledged event; a failing destination never stops the others,
4. **report** merges `reports/hour=<h>.json`: the committed version's counts and every
   destination's latest push (from this run, an earlier one or a replay), which reconcile
   (`events.read == written + quarantined + duplicates`; per destination
   `considered == selected + skipped`, `selected == delivered + dead_lettered + pending`),
   whatever happened upstream, keeps this run's own report beside it (`runs/hour=<h>/`), and
   fails the run if a destination failed; **lake_updated** emits the `currents_lake` asset
   event (not on a dry run).

The hour's page in the Airflow UI: the run's "Currents report" tab, or Browse > Currents report.

Trigger from the UI with `hour` (e.g. `2026-11-01T10`) to (re)process a past hour,
`destinations` to push to a subset, and `dry_run` to validate, build batches and report
without writing or sending anything. Endpoints and secrets come from the Connections
`currents_<destination>`; `currents_replay` redelivers dead letters and pending events. Backfill with
`airflow backfill create --dag-id currents_hourly --from-date ... --to-date ...`.
Landing and lake URLs come from the Variables `currents_landing_url` / `currents_lake_url`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import (
    Asset,
    Connection,
    Param,
    Variable,
    dag,
    get_current_context,
    task,
)
from currents_timetable import HourlyRunIds  # plugins/: registered there for the scheduler

from currents_relay.destinations import enabled_destinations
from currents_relay.hours import HOUR_PATTERN

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING = str(PROJECT / "data" / "landing")
DEFAULT_LAKE = str(PROJECT / "data" / "lake")
DESTINATIONS = [d.name for d in enabled_destinations()]  # destinations.toml
LAKE = Asset(name="currents_lake", uri="file:///currents-relay/lake", group="currents")


def _urls() -> tuple[str, str]:
    landing = Variable.get("currents_landing_url", default=DEFAULT_LANDING)
    lake = Variable.get("currents_lake_url", default=DEFAULT_LAKE)
    return landing, lake


@dag(
    dag_id="currents_hourly",
    schedule=HourlyRunIds("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["currents", "braze", "lake"],
    default_args={"owner": "currents-relay", "retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "hour": Param(
            None,
            type=["null", "string"],
            pattern=HOUR_PATTERN,
            description="UTC hour to process, e.g. 2026-11-01T10 (default: the run's interval)",
        ),
        "dry_run": Param(
            False, type="boolean", description="Validate, batch and report; write and send nothing"
        ),
        "destinations": Param(
            DESTINATIONS,
            type="array",
            items={"type": "string", "enum": DESTINATIONS},
            description="Destinations to push this hour to",
        ),
        "require_files": Param(
            False,
            type="boolean",
            description="Fail the run when the hour has no files (for sources that always send)",
        ),
        "settle_minutes": Param(
            15,
            type="integer",
            minimum=0,
            description="Minutes to wait after the hour ends (ignored when hour is set)",
        ),
        "validation_engine": Param(
            "arrow",
            type="string",
            enum=["arrow", "gx"],
            description="Run the Great Expectations suites vectorised (arrow) or with GX itself (gx)",
        ),
        "min_time": Param(
            None, type=["null", "integer"], description="Quarantine events before this UNIX time"
        ),
        "max_time": Param(
            None, type=["null", "integer"], description="Quarantine events after this UNIX time"
        ),
    },
)
def currents_hourly():
    # Each task's result is one XCom: a `-> dict` task would otherwise also push every key as
    # an XCom of its own (one API call and database write each: ~0.3 s a push task).
    @task(retries=0, multiple_outputs=False)
    def resolve() -> dict:
        """Name the hour this run processes and when its settle wait ends."""
        from airflow.sdk.exceptions import AirflowFailException

        from currents_relay.hours import hour_key, resolve_hour, settle_until

        context = get_current_context()
        params = context["params"]
        try:
            hour = resolve_hour(params.get("hour"), context.get("data_interval_start"))
            until = settle_until(params, context.get("data_interval_end"))
        except ValueError as error:
            raise AirflowFailException(f"currents_hourly: {error}") from None
        print(f"this run processes hour {hour_key(hour)} UTC; it settles until {until}")
        return {"hour": hour_key(hour), "settle_until": until}

    settle = DateTimeSensorAsync(
        task_id="settle",
        target_time="{{ ti.xcom_pull(task_ids='resolve')['settle_until'] }}",
        retries=0,
    )

    @task(multiple_outputs=False)
    def collect(resolved: dict) -> dict:
        """List the hour's landed files (both formats)."""
        from airflow.sdk.exceptions import AirflowFailException

        from currents_relay.hours import parse_hour
        from currents_relay.ingest.landing import list_hour

        params = get_current_context()["params"]
        landing, _ = _urls()
        files = list_hour(landing, parse_hour(resolved["hour"]))
        print(f"hour {resolved['hour']}: {len(files)} files in {landing}")
        if not files:
            message = f"hour {resolved['hour']}: no files in the landing zone {landing}"
            if params.get("require_files"):
                raise AirflowFailException(message + " (require_files is on)")
            log.warning("%s: the hour is committed empty", message)
        return {"hour": resolved["hour"], "files": [f.to_dict() for f in files]}

    @task(multiple_outputs=False)
    def ingest(collected: dict) -> dict:
        """Normalize, validate, deduplicate and write the hour into the lake."""
        from currents_relay.hours import parse_hour
        from currents_relay.ingest.hour import process_hour
        from currents_relay.ingest.landing import LandedFile
        from currents_relay.validation.suites import TimeBounds

        context = get_current_context()
        params = context["params"]
        landing, lake = _urls()
        report = process_hour(
            landing,
            lake,
            parse_hour(collected["hour"]),
            dry_run=bool(params.get("dry_run")),
            files=[LandedFile.from_dict(f) for f in collected["files"]],
            bounds=TimeBounds(params.get("min_time"), params.get("max_time")),
            validation_engine=params.get("validation_engine") or "arrow",
        )
        return report

    @task(outlets=[LAKE], multiple_outputs=False)
    def lake_updated(ingested: dict) -> None:
        """Tell asset-scheduled DAGs that the hour's new version is committed."""
        from airflow.sdk.exceptions import AirflowSkipException

        if ingested["dry_run"]:
            raise AirflowSkipException("a dry run commits nothing: no asset event")
        get_current_context()["outlet_events"][LAKE].extra = {
            "hour": ingested["hour"],
            "written": ingested["events"]["written"],
        }

    @task(
        retries=3,
        retry_delay=timedelta(minutes=5),
        retry_exponential_backoff=True,
        # Bounds one push (a batch's retries are bounded by the destination's budget_seconds);
        # what it did not deliver stays pending for the next try, run or replay.
        execution_timeout=timedelta(hours=2),
        multiple_outputs=False,
    )
    def push(ingested: dict, destination: str) -> dict:
        """Deliver the hour to one destination (exactly-once in effect, through its ledger)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
        from airflow.sdk.log import mask_secret

        from currents_relay.delivery.engine import DeliveryStopped
        from currents_relay.delivery.partner import ConfigurationError, Endpoint
        from currents_relay.delivery.push import push_hour
        from currents_relay.lake.versions import NotProcessed

        if destination not in get_current_context()["params"]["destinations"]:
            raise AirflowSkipException(f"{destination} is not in this run's destinations")
        try:
            connection = Connection.get(f"currents_{destination}")
        except Exception as missing:
            raise AirflowFailException(
                f"{destination}: connection currents_{destination} not found ({type(missing).__name__})"
            ) from None
        try:
            endpoint = Endpoint.from_connection(connection)
            return push_hour(
                _urls()[1],
                ingested["hour"],
                destination,
                endpoint,
                dry_run=ingested["dry_run"],
                mask=mask_secret,
            )
        except (DeliveryStopped, ConfigurationError, NotProcessed) as broken:
            # Retrying cannot fix credentials or configuration: fail now, keep events pending.
            raise AirflowFailException(str(broken)) from None

    @task(trigger_rule="all_done", retries=1, multiple_outputs=False)
    def report() -> dict:
        """Write the reconciled report, whatever happened upstream; fail if any step failed."""
        import json

        from airflow.sdk.exceptions import AirflowFailException

        from currents_relay.lake import Lake
        from currents_relay.lake.reports import write_report, write_run_report

        context = get_current_context()
        ti = context["ti"]
        ingested = ti.xcom_pull(task_ids="ingest")
        if not ingested:
            raise AirflowFailException(
                "ingest did not finish: no report for this hour (see the ingest task's log)"
            )
        states = ti.get_task_states(
            dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=[f"push_{d}" for d in DESTINATIONS]
        ).get(ti.run_id, {})
        # The hour's state (its committed version and every destination's latest push, from
        # any run or replay), then what this run's tasks did.
        merged = None if ingested["dry_run"] else write_report(Lake(_urls()[1]), ingested["hour"])
        result = dict(merged or ingested)
        result.setdefault("destinations", {})
        this_run, failed = {}, []
        for name in DESTINATIONS:
            state = states.get(f"push_{name}")
            if state == "skipped":
                continue
            this_run[name] = state
            if state != "success":
                failed.append(name)
            if ingested["dry_run"]:
                result["destinations"][name] = ti.xcom_pull(task_ids=f"push_{name}") or {}
        result["this_run"] = {"run_id": ti.run_id, "push_task_states": this_run}
        if not ingested["files"]["read"]:
            result["warnings"] = [f"hour {ingested['hour']}: no files in the landing zone"]
        if not ingested["dry_run"]:
            write_run_report(Lake(_urls()[1]), ingested["hour"], ti.run_id, result)
        print(json.dumps(result, indent=2))
        if failed:
            raise AirflowFailException(
                f"push failed for {', '.join(failed)}: events stay pending (see the report)"
            )
        return result

    resolved = resolve()
    resolved >> settle
    collected = collect(resolved)
    settle >> collected
    ingested = ingest(collected)
    lake_updated(ingested)
    pushes = [
        push.override(task_id=f"push_{name}", pool=f"currents_{name}")(ingested, name)
        for name in DESTINATIONS
    ]
    reported = report()
    ingested >> reported
    for pushed in pushes:
        pushed >> reported


currents_hourly()
