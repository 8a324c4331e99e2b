"""The hourly timetable of `currents_hourly`: Airflow's cron data-interval timetable, with run
ids that name the hour a run processes (`scheduled__2026-11-01T10`) instead of the end of its
interval. (Airflow 3.3 names a backfill's first runs itself, after the interval's end; only
their re-runs come through here.)

A custom timetable is registered by a plugin so that the scheduler can read the serialized
DAG; the DAG file imports it from here (Airflow puts the plugins folder on `sys.path`).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.interval import CronDataIntervalTimetable


class HourlyRunIds(CronDataIntervalTimetable):
    """Runs own whole UTC hours `[h, h+1)`; each run id names its hour."""

    def generate_run_id(
        self, *, run_type: Any, run_after: Any, data_interval: Any, **extra: Any
    ) -> str:
        if data_interval is None:
            return super().generate_run_id(
                run_type=run_type, run_after=run_after, data_interval=data_interval, **extra
            )
        return run_type.generate_run_id(suffix=data_interval.start.strftime("%Y-%m-%dT%H"))


class CurrentsTimetablePlugin(AirflowPlugin):
    name = "currents_timetable"
    timetables = [HourlyRunIds]  # noqa: RUF012 (Airflow's plugin interface)
