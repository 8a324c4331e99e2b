"""The Great Expectations suites: what they check, what they record, and two engines that agree."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from currents_relay.catalogue import known_event_types, lookup
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import HourIngest, IngestOptions
from currents_relay.validation.suites import (
    STRUCTURAL_RULES,
    GxValidator,
    TimeBounds,
    checks_for,
    make_validator,
)
from tests.conftest import HOUR

ENGINES = ["arrow", "gx"]


def test_every_family_suite_checks_required_fields_and_documents_structural_rules():
    validator = GxValidator()
    families = {lookup(t).family for t in known_event_types()}
    for family in families:
        suite = validator.suite(family)
        kinds = {
            (e.expectation_type if hasattr(e, "expectation_type") else e.type, e.column)
            for e in suite.expectations
        }
        for column in ("event_type", "id", "time"):
            assert ("expect_column_values_to_not_be_null", column) in kinds
        assert ("expect_column_value_lengths_to_be_between", "id") in kinds
        assert suite.meta["structural_rules"] == STRUCTURAL_RULES


def test_email_and_phone_families_check_formats():
    email_rules = {c.reason for c in checks_for("messages.email")}
    assert "malformed_email:email_address" in email_rules
    sms_rules = {c.reason for c in checks_for("messages.sms")}
    assert "malformed_phone:to_phone_number" in sms_rules
    assert not any(c.rule == "time_out_of_bounds" for c in checks_for("behaviors"))


@pytest.mark.parametrize("engine", ENGINES)
def test_verdicts_and_positions(engine):
    validator = make_validator(engine)
    table = pa.table(
        {
            "event_type": ["users.messages.email.Open"] * 6,
            "id": ["a", "", None, "d", "e", "f"],
            "time": pa.array([1, 2, 3, None, 5, 6], pa.int64()),
            "email_address": ["a@b.co", "a@b.co", None, "x@y.org", "not an email", "two@@x.io"],
        }
    )
    failures = validator.validate("messages.email", table, lambda row: (0, row))
    assert failures == {
        1: ["empty:id"],
        2: ["missing:id"],
        3: ["missing:time"],
        4: ["malformed_email:email_address"],
        5: ["malformed_email:email_address"],
    }
    summary = validator.summary()
    rules = {r["rule"] + ":" + r["column"]: r for r in summary["suites"]["currents.messages.email"]}
    assert rules["malformed_email:email_address"]["positions"] == [[0, 4], [0, 5]]
    assert "not an email" not in repr(summary)


@pytest.mark.parametrize("engine", ENGINES)
def test_time_bounds_are_off_by_default_and_apply_when_set(engine):
    table = pa.table(
        {
            "event_type": ["t", "t"],
            "id": ["a", "b"],
            "time": pa.array([1_000, 2_000_000_000], pa.int64()),
        }
    )
    assert make_validator(engine).validate("behaviors", table, lambda row: (0, row)) == {}
    bounded = make_validator(engine, TimeBounds(min_time=1_500_000_000))
    assert bounded.validate("behaviors", table, lambda row: (0, row)) == {
        0: ["time_out_of_bounds:time"]
    }


def test_arrow_and_gx_engines_give_the_same_verdicts_on_a_whole_hour(generated_hour, tmp_path):
    landing, _ = generated_hour
    bounds = TimeBounds(min_time=1_793_527_200 + 1800)  # half the generated hour is "too early"
    runs = {}
    for engine in ENGINES:
        options = IngestOptions(validation_engine=engine, bounds=bounds)
        report = HourIngest(str(landing), str(tmp_path / engine), parse_hour(HOUR), options).run()
        lake = tmp_path / engine
        manifest = json.loads((lake / "manifests" / f"hour={HOUR}.json").read_text())
        validation = json.loads((lake / manifest["outputs"]["validation"]).read_text())
        runs[engine] = (report, validation)
    (arrow_report, arrow_results), (gx_report, gx_results) = runs["arrow"], runs["gx"]
    assert arrow_report["events"] == gx_report["events"]
    assert arrow_report["events"]["quarantined"] > 1000
    assert arrow_report["quarantine_reasons"] == gx_report["quarantine_reasons"]
    assert arrow_results["suites"] == gx_results["suites"]
    assert (arrow_results["engine"], gx_results["engine"]) == ("arrow", "great_expectations")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rule_added_to_a_suite_is_enforced_with_no_other_edit(engine, monkeypatch):
    """An expectation type the vectorised engine does not evaluate itself (here, a set of
    allowed values) is still enforced: Great Expectations runs it."""
    from currents_relay.validation import suites as validation

    original = validation.checks_for

    def with_a_new_rule(family, bounds=None):
        allowed = (("value_set", ["Open", "Click"]),)
        return [
            *original(family, bounds or TimeBounds()),
            validation.Check("unknown_kind", "kind", "ExpectColumnValuesToBeInSet", allowed),
        ]

    monkeypatch.setattr(validation, "checks_for", with_a_new_rule)
    table = pa.table(
        {
            "event_type": ["t"] * 3,
            "id": ["a", "b", "c"],
            "time": pa.array([1, 2, 3], pa.int64()),
            "kind": ["Open", "Bounce", None],
        }
    )
    failures = make_validator(engine).validate("behaviors", table, lambda row: (0, row))
    assert failures == {1: ["unknown_kind:kind"]}


def gx_and_arrow_agree(landing, tmp_path) -> dict:
    runs = {}
    for engine in ENGINES:
        lake = tmp_path / engine
        options = IngestOptions(validation_engine=engine)
        report = HourIngest(str(landing), str(lake), parse_hour(HOUR), options).run()
        manifest = json.loads((lake / "manifests" / f"hour={HOUR}.json").read_text())
        runs[engine] = (report, json.loads((lake / manifest["outputs"]["validation"]).read_text()))
    (arrow, arrow_results), (gx, gx_results) = runs["arrow"], runs["gx"]
    assert (
        arrow["events"] == gx["events"] and arrow["quarantine_reasons"] == gx["quarantine_reasons"]
    )
    assert arrow_results["suites"] == gx_results["suites"]
    return arrow


def test_gx_and_the_vectorised_engine_agree_on_every_real_sample(samples, tmp_path):
    import shutil

    from tests.conftest import avro_samples, http_samples
    from tests.test_bad_input import DATE

    landing = tmp_path / "landing"
    http = landing / "http" / f"date={DATE}"
    http.mkdir(parents=True)
    for sample in http_samples():
        shutil.copyfile(sample, http / f"{sample.parent.name}-{sample.name}")
    for sample in avro_samples():
        folder = (
            landing / "dataexport.x.S3.integration.1" / f"event_type={sample.stem}" / f"date={DATE}"
        )
        folder.mkdir(parents=True)
        shutil.copyfile(sample, folder / "part.avro")
    report = gx_and_arrow_agree(landing, tmp_path)
    assert report["events"]["quarantined"] == 0 and report["events"]["written"] >= 94


def test_gx_and_the_vectorised_engine_agree_on_the_bad_input_corpus(tmp_path):
    from tests.test_bad_input import corpus as corpus_fixture

    landing = corpus_fixture.__wrapped__(tmp_path)
    report = gx_and_arrow_agree(landing, tmp_path)
    assert report["quarantine_reasons"]["malformed_email:email_address"] == 1


def test_docs_keeps_gx_results_and_data_docs_for_an_hour_without_values(generated_hour, tmp_path):
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from currents_relay.lake import Lake
    from currents_relay.lake.versions import live_files
    from tests.conftest import ROOT

    landing, _ = generated_hour
    lake = tmp_path / "lake"
    HourIngest(str(landing), str(lake), parse_hour(HOUR)).run()
    middle = 1_793_527_200 + 1800  # half the hour falls outside these bounds
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "currents_relay.cli",
            "docs",
            "--lake",
            str(lake),
            "--hour",
            HOUR,
            "--min-time",
            str(middle),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["suites"] and not any(s["success"] for s in result["suites"].values())
    project = lake / "data_docs" / f"hour={HOUR}" / "gx"
    assert (project / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    stored = list((project / "uncommitted" / "validations").rglob("*.json"))
    assert len(stored) == len(result["suites"])
    text = "".join(p.read_text() for p in project.rglob("*") if p.suffix in (".json", ".html"))
    emails = pq.read_table(live_files(Lake(str(lake)), HOUR, "users.messages.email.Open")[0])
    assert emails["email_address"][0].as_py() not in text  # counts only, never values
    assert emails["id"][0].as_py() not in text
