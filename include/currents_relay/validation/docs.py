"""Great Expectations' own validation results and Data Docs for one committed hour.

`build_docs` runs every family's suite with Great Expectations over the hour's live events
(the committed version), in a file-backed GX project under `out`: GX keeps each validation
result there (`gx/uncommitted/validations/`) and renders its Data Docs site. Results are
kept at GX's `SUMMARY` level with no unexpected values listed: counts only, never the
failing values (they are PII).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from currents_relay.catalogue import family_of
from currents_relay.lake import Lake
from currents_relay.lake.versions import require_committed
from currents_relay.validation.suites import (
    TimeBounds,
    checked_table,
    great_expectations,
    gx_suite,
)

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}


def _family_tables(lake: Lake, hour: str, bounds: TimeBounds) -> dict[str, pa.Table]:
    """Each family's events of the hour's committed version, only the checked columns."""
    by_family: dict[str, list[pa.Table]] = {}
    for event_type, files in require_committed(lake, hour).event_files().items():
        family = family_of(event_type)
        for relative in files:
            with lake.fs.open(lake.path(relative), "rb") as handle:
                table = checked_table(pq.read_table(handle), family, bounds)
            by_family.setdefault(family, []).append(table)
    return {
        family: pa.concat_tables(tables, promote_options="permissive")
        for family, tables in sorted(by_family.items())
    }


def build_docs(
    lake_url: str, hour: str, out: Path, bounds: TimeBounds | None = None
) -> dict[str, Any]:
    """Validate the committed hour with Great Expectations; returns where its Data Docs
    are and each suite's verdict."""
    bounds = bounds or TimeBounds()
    gx = great_expectations()
    from great_expectations.checkpoint import UpdateDataDocsAction

    out.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(out))
    source = context.data_sources.add_or_update_pandas("currents")
    suites: dict[str, Any] = {}
    for family, table in _family_tables(Lake(lake_url), hour, bounds).items():
        name = f"currents.{family}"
        asset = source.add_dataframe_asset(f"hour={hour} {name}")
        batch = asset.add_batch_definition_whole_dataframe("hour")
        suite = context.suites.add_or_update(gx_suite(family, bounds))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"hour={hour} {name}", data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"hour={hour} {name}",
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="data_docs")],
                result_format=RESULT_FORMAT,
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": table.to_pandas()})
        suites[name] = {"rows": table.num_rows, "success": bool(result.success)}
    index = out / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return {"hour": hour, "data_docs": str(index), "suites": suites}
