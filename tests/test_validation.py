"""The Great Expectations suites: what they check, what they record, what they never keep."""

from __future__ import annotations

import pyarrow as pa
import pytest

from currents_relay.catalogue import known_event_types, lookup
from currents_relay.validation import STRUCTURAL_RULES, TimeBounds, Validator, checks_for


@pytest.fixture(scope="module")
def validator():
    return Validator()


def test_every_family_suite_checks_required_fields_and_documents_structural_rules(validator):
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


def test_verdicts_and_positions(validator):
    table = pa.table(
        {
            "event_type": ["users.messages.email.Open"] * 5,
            "id": ["a", "", None, "d", "e"],
            "time": pa.array([1, 2, 3, None, 5], pa.int64()),
            "email_address": ["a@b.co", "a@b.co", None, "x@y.org", "not an email"],
        }
    )
    positions = [(0, i) for i in range(5)]
    failures = validator.validate("messages.email", table, positions)
    assert failures == {
        1: ["empty:id"],
        2: ["missing:id"],
        3: ["missing:time"],
        4: ["malformed_email:email_address"],
    }
    summary = validator.summary()
    rules = {r["rule"] + ":" + r["column"]: r for r in summary["suites"]["currents.messages.email"]}
    assert rules["malformed_email:email_address"]["positions"] == [[0, 4]]
    assert "not an email" not in repr(summary)


def test_time_bounds_are_off_by_default_and_apply_when_set():
    table = pa.table(
        {
            "event_type": ["t", "t"],
            "id": ["a", "b"],
            "time": pa.array([1_000, 2_000_000_000], pa.int64()),
        }
    )
    assert Validator().validate("behaviors", table, [(0, 0), (0, 1)]) == {}
    bounded = Validator(TimeBounds(min_time=1_500_000_000))
    assert bounded.validate("behaviors", table, [(0, 0), (0, 1)]) == {
        0: ["time_out_of_bounds:time"]
    }
