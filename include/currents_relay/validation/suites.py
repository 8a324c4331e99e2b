"""Value rules, as Great Expectations 1.x suites, one per event family.

Every family's suite checks that `event_type`, `id` and `time` are present and `id` is not
empty; families with e-mail or phone fields check that they are well formed where present;
time bounds apply only when configured (real samples carry 2016 and 2034 timestamps and
offline SDK events arrive late). Structural rules (types, UTF-8, string length) are enforced
while normalizing; they are listed in each suite's `meta` so the suite documents every rule.

Results keep counts and row positions (file index in the manifest, record offset), never the
failing values: they are PII.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from currents_relay.catalogue import family_of, known_event_types, lookup

EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_REGEX = r"^\+?[0-9]{3,15}$"  # E.164 numbers and short codes, as Currents writes them
EMAIL_COLUMNS = ("email_address",)
PHONE_COLUMNS = (
    "phone_number",
    "user_phone_number",
    "to_phone_number",
    "from_phone_number",
    "inbound_phone_number",
)

STRUCTURAL_RULES = {
    "unreadable_file": "the file cannot be read whole (bad JSON, truncated Avro...): quarantined whole",
    "malformed_json": "a JSON-lines line that does not parse",
    "not_an_object": "an HTTP event that is not a JSON object",
    "type_mismatch": "a value that is not of the catalogue type (e.g. `time` not an integer)",
    "not_utf8": "a string that is not valid UTF-8",
    "too_long": "a string longer than MAX_STRING_CHARS",
    "out_of_range": "an integer beyond int64 (e.g. `time` = 1.79e26)",
    "too_large": "a file (or an inflated gzip body) over max_file_bytes: quarantined unread",
    "symlink": "a symbolic link in the landing zone: never followed",
    "not_a_file": "a folder or device where a data file is expected",
    "undecodable_file_name": "a file name that is not UTF-8",
    "event_type_mismatch": "an Avro file whose records are of another event type than its folder",
}


@dataclass(frozen=True)
class TimeBounds:
    """Optional bounds on `time` (UNIX seconds); both None means no check."""

    min_time: int | None = None
    max_time: int | None = None

    @property
    def active(self) -> bool:
        return self.min_time is not None or self.max_time is not None


@dataclass(frozen=True)
class Check:
    """One expectation of a suite, with the short rule name used in quarantine reasons."""

    rule: str
    column: str
    expectation: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def reason(self) -> str:
        return f"{self.rule}:{self.column}"


@cache
def family_columns() -> dict[str, frozenset[str]]:
    """Family -> every field its known event types carry."""
    columns: dict[str, set[str]] = {}
    for name in known_event_types():
        columns.setdefault(family_of(name), set()).update(lookup(name).fields)
    return {family: frozenset(cols) for family, cols in columns.items()}


def checks_for(family: str, bounds: TimeBounds = TimeBounds()) -> list[Check]:
    """The expectations of one family's suite."""
    checks = [
        Check("missing", col, "ExpectColumnValuesToNotBeNull")
        for col in ("event_type", "id", "time")
    ]
    checks.append(Check("empty", "id", "ExpectColumnValueLengthsToBeBetween", (("min_value", 1),)))
    if bounds.active:
        checks.append(
            Check(
                "time_out_of_bounds",
                "time",
                "ExpectColumnValuesToBeBetween",
                (("min_value", bounds.min_time), ("max_value", bounds.max_time)),
            )
        )
    present = family_columns().get(family, frozenset())
    checks += [
        Check("malformed_email", col, "ExpectColumnValuesToMatchRegex", (("regex", EMAIL_REGEX),))
        for col in EMAIL_COLUMNS
        if col in present
    ]
    checks += [
        Check("malformed_phone", col, "ExpectColumnValuesToMatchRegex", (("regex", PHONE_REGEX),))
        for col in PHONE_COLUMNS
        if col in present
    ]
    return checks


def checked_columns(checks: list[Check]) -> list[str]:
    return list(dict.fromkeys(check.column for check in checks))


def checked_table(table: pa.Table, family: str, bounds: TimeBounds) -> pa.Table:
    """The columns `family`'s suite checks, in suite order (`event_type`, `id`, `time`
    first); a column `table` lacks is all null."""
    n = table.num_rows
    return pa.table(
        {
            name: table[name] if name in table.column_names else pa.nulls(n, pa.string())
            for name in checked_columns(checks_for(family, bounds))
        }
    )


def great_expectations() -> Any:
    """Great Expectations, imported with its usage statistics off (no traffic leaves the
    machine) and its logging at WARNING."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def gx_suite(family: str, bounds: TimeBounds = TimeBounds()) -> Any:
    """`family`'s suite as a Great Expectations `ExpectationSuite` (each expectation's `meta`
    names its rule)."""
    gx = great_expectations()
    suite = gx.ExpectationSuite(
        name=f"currents.{family}", meta={"structural_rules": STRUCTURAL_RULES, "family": family}
    )
    for check in checks_for(family, bounds):
        expectation = getattr(gx.expectations, check.expectation)
        suite.add_expectation(
            expectation(column=check.column, meta={"rule": check.rule}, **dict(check.kwargs))
        )
    return suite


@dataclass
class ExpectationResult:
    rule: str
    column: str
    expectation: str
    element_count: int = 0
    unexpected_count: int = 0
    positions: list[tuple[int, int]] = field(default_factory=list)  # (file index, offset)


def expectation_type(class_name: str) -> str:
    """`ExpectColumnValuesToNotBeNull` -> `expect_column_values_to_not_be_null` (GE's type names)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


class Validator:
    """Runs the family suites and records their results; engines differ only in `_unexpected`."""

    engine = "none"

    def __init__(self, bounds: TimeBounds = TimeBounds()) -> None:
        self.bounds = bounds
        self.results: dict[str, dict[str, ExpectationResult]] = {}

    def validate(
        self, family: str, table: pa.Table, locate: Callable[[int], tuple[int, int]]
    ) -> dict[int, list[str]]:
        """Validate rows of one family; returns row index -> failing rule reasons (suite order).
        `locate` gives a failing row's position: (file index in the manifest, record offset)."""
        checks = checks_for(family, self.bounds)
        narrow = checked_table(table, family, self.bounds)
        unexpected = self._unexpected(family, checks, narrow)
        failures: dict[int, list[str]] = {}
        family_results = self.results.setdefault(family, {})
        for check in checks:
            record = family_results.setdefault(
                check.reason,
                ExpectationResult(check.rule, check.column, expectation_type(check.expectation)),
            )
            indexes = sorted(unexpected.get(check.reason, ()))
            record.element_count += table.num_rows
            record.unexpected_count += len(indexes)
            for index in indexes:
                failures.setdefault(index, []).append(check.reason)
                record.positions.append(locate(index))
        return failures

    def summary(self) -> dict[str, Any]:
        """Counts and positions per family and rule: what `validation/hour=<h>.json` holds."""
        from importlib.metadata import version

        return {
            "engine": self.engine,
            "suites_defined_with": f"great_expectations {version('great-expectations')}",
            "time_bounds": {"min_time": self.bounds.min_time, "max_time": self.bounds.max_time},
            "structural_rules": STRUCTURAL_RULES,
            "suites": {
                f"currents.{family}": [
                    {
                        "rule": r.rule,
                        "column": r.column,
                        "expectation": r.expectation,
                        "element_count": r.element_count,
                        "unexpected_count": r.unexpected_count,
                        "positions": [list(p) for p in r.positions],
                    }
                    for r in results.values()
                ]
                for family, results in sorted(self.results.items())
            },
        }

    def _unexpected(
        self, family: str, checks: list[Check], table: pa.Table
    ) -> dict[str, list[int]]:
        raise NotImplementedError


class ArrowValidator(Validator):
    """Evaluates the suites' expectations vectorised with pyarrow.compute (one pass each)
    where it knows their type (`VECTORISED`); any other expectation a suite holds is run by
    Great Expectations itself, so a rule added to a suite is enforced with no other edit.

    Semantics follow Great Expectations' column-map expectations: nulls fail only
    `not_be_null` and are ignored by the others; regexes are searched (`^...$` anchored).
    Tests run both engines on the real samples, the bad-input corpus and generated hours.
    """

    engine = "arrow"
    VECTORISED = frozenset(
        (
            "ExpectColumnValuesToNotBeNull",
            "ExpectColumnValueLengthsToBeBetween",
            "ExpectColumnValuesToMatchRegex",
            "ExpectColumnValuesToBeBetween",
        )
    )

    def __init__(self, bounds: TimeBounds = TimeBounds()) -> None:
        super().__init__(bounds)
        self._gx: GxValidator | None = None  # for expectations not evaluated here

    def _unexpected(
        self, family: str, checks: list[Check], table: pa.Table
    ) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        others = [check for check in checks if check.expectation not in self.VECTORISED]
        if others:
            self._gx = self._gx or GxValidator(self.bounds)
            found = self._gx._unexpected(family, checks, table)
            out |= {check.reason: found.get(check.reason, []) for check in others}
        for check in checks:
            if check.expectation not in self.VECTORISED:
                continue
            column = table[check.column]
            kwargs = dict(check.kwargs)
            if check.expectation == "ExpectColumnValuesToNotBeNull":
                bad = pc.is_null(column)
            elif check.expectation == "ExpectColumnValueLengthsToBeBetween":
                bad = _outside(pc.utf8_length(column.cast(pa.string())), kwargs)
            elif check.expectation == "ExpectColumnValuesToMatchRegex":
                bad = pc.invert(pc.match_substring_regex(column.cast(pa.string()), kwargs["regex"]))
            else:  # ExpectColumnValuesToBeBetween
                bad = _outside(column, kwargs)
            out[check.reason] = pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist()
        return out


def _outside(values: pa.ChunkedArray | pa.Array, kwargs: dict[str, Any]) -> pa.Array:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bad = pc.less(values, low) if low is not None else pa.nulls(len(values), pa.bool_())
    if high is not None:
        bad = pc.or_kleene(bad, pc.greater(values, high))
    return bad


class GxValidator(Validator):
    """Runs the suites with Great Expectations itself (ephemeral context, pandas)."""

    engine = "great_expectations"

    def __init__(self, bounds: TimeBounds = TimeBounds()) -> None:
        super().__init__(bounds)
        self._context: Any = None
        self._batch_definition: Any = None
        self._suites: dict[str, Any] = {}

    def suite(self, family: str) -> Any:
        """The Great Expectations suite of `family`, added to this validator's context once."""
        if self._context is None:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            self._context = great_expectations().get_context(mode="ephemeral")
            self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = self._context.data_sources.add_pandas("currents")
            asset = source.add_dataframe_asset("events")
            self._batch_definition = asset.add_batch_definition_whole_dataframe("chunk")
        if family not in self._suites:
            self._suites[family] = self._context.suites.add(gx_suite(family, self.bounds))
        return self._suites[family]

    def _unexpected(
        self, family: str, checks: list[Check], table: pa.Table
    ) -> dict[str, list[int]]:
        suite = self.suite(family)
        result = self._batch_definition.get_batch(
            batch_parameters={"dataframe": table.to_pandas()}
        ).validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "include_unexpected_rows": False,
                "partial_unexpected_count": 0,
            },
        )
        out: dict[str, list[int]] = {}
        for item in result.results:
            config = item.expectation_config
            reason = f"{config.meta['rule']}:{config.kwargs['column']}"
            out[reason] = [int(i) for i in item.result.get("unexpected_index_list") or []]
        return out


ENGINES: dict[str, type[Validator]] = {"arrow": ArrowValidator, "gx": GxValidator}


def make_validator(engine: str = "arrow", bounds: TimeBounds = TimeBounds()) -> Validator:
    """The validator for `engine`: `arrow` (vectorised, default) or `gx` (Great Expectations)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown validation engine {engine!r}; use one of {sorted(ENGINES)}")
    return ENGINES[engine](bounds)
