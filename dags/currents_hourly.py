"""
### currents_hourly: one hour of Braze Currents exports -> a validated Parquet lake

Each run owns one UTC hour `[h, h+1)`: the `hour` param if given, else the run's
`data_interval_start`. The run waits `settle_minutes` after the hour ends (a deferrable
sensor, skipped when `hour` is given) so Currents can finish writing, then:

1. **collect** lists the hour's files in the landing zone (both formats),
2. **ingest** normalizes, validates (Great Expectations suites per event family), quarantines
   bad rows with their reasons, drops duplicates and writes the hour into the lake, replacing
   it exactly (re-runs and backfills are safe),
3. **report** writes `reports/hour=<h>.json` with counts that reconcile
   (`events.read == written + quarantined + duplicates`).

Trigger from the UI with `hour` (e.g. `2026-11-01T10`) to (re)process a past hour, and
`dry_run` to validate and report without writing. Backfill with
`airflow backfill create --dag-id currents_hourly --from-date ... --to-date ...`.
Landing and lake URLs come from the Variables `currents_landing_url` / `currents_lake_url`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    Param,
    Variable,
    dag,
    get_current_context,
    task,
)
from currents_relay.hours import HOUR_PATTERN, hour_key, resolve_hour, settle_until

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING = str(PROJECT / "data" / "landing")
DEFAULT_LAKE = str(PROJECT / "data" / "lake")
LAKE = Asset(name="currents_lake", uri="file:///currents-relay/lake", group="currents")


def _urls() -> tuple[str, str]:
    landing = Variable.get("currents_landing_url", default=DEFAULT_LANDING)
    lake = Variable.get("currents_lake_url", default=DEFAULT_LAKE)
    return landing, lake


@dag(
    dag_id="currents_hourly",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["currents", "braze", "lake"],
    default_args={"owner": "currents-relay", "retries": 2, "retry_delay": timedelta(minutes=2)},
    user_defined_macros={"settle_until": settle_until},
    params={
        "hour": Param(
            None,
            type=["null", "string"],
            pattern=HOUR_PATTERN,
            description="UTC hour to process, e.g. 2026-11-01T10 (default: the run's interval)",
        ),
        "dry_run": Param(False, type="boolean", description="Validate and report; write nothing"),
        "settle_minutes": Param(
            15,
            type="integer",
            minimum=0,
            description="Minutes to wait after the hour ends (ignored when hour is set)",
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
    settle = DateTimeSensorAsync(
        task_id="settle",
        target_time="{{ settle_until(params, data_interval_end) }}",
        retries=0,
    )

    @task
    def collect() -> dict:
        """List the hour's landed files (both formats)."""
        from currents_relay.landing import list_hour

        context = get_current_context()
        hour = resolve_hour(context["params"].get("hour"), context.get("data_interval_start"))
        landing, _ = _urls()
        files = list_hour(landing, hour)
        print(f"hour {hour_key(hour)}: {len(files)} files in {landing}")
        return {"hour": hour_key(hour), "files": [f.to_dict() for f in files]}

    @task(outlets=[LAKE])
    def ingest(collected: dict) -> dict:
        """Normalize, validate, deduplicate and write the hour into the lake."""
        from currents_relay.hours import parse_hour
        from currents_relay.ingest import process_hour
        from currents_relay.landing import LandedFile
        from currents_relay.validation import TimeBounds

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
        )
        if not report["dry_run"]:
            context["outlet_events"][LAKE].extra = {
                "hour": report["hour"],
                "written": report["events"]["written"],
            }
        return report

    @task(trigger_rule="all_done")
    def report(ingested: dict | None) -> dict:
        """Write the reconciled report (runs whatever happened upstream)."""
        import json

        from currents_relay.ingest import write_report

        if not ingested:
            raise RuntimeError(
                "ingest did not finish: no report for this hour (see the ingest task's log)"
            )
        if not ingested["dry_run"]:
            write_report(_urls()[1], ingested)
        print(json.dumps(ingested, indent=2))
        return ingested

    collected = collect()
    settle >> collected
    report(ingest(collected))


currents_hourly()
