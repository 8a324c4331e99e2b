"""Delivery fixtures: an ingested hour in a fresh lake per test, and the partner sandbox."""

from __future__ import annotations

import shutil

import pytest

from currents_relay.delivery.partner import Endpoint
from currents_relay.hours import parse_hour
from currents_relay.ingest.hour import process_hour
from currents_relay.tools.sandbox import Sandbox
from tests.conftest import HOUR

PARTNERS = ["treasure_data", "rudderstack", "zeotap", "custom_http", "segment", "mparticle"]
HTTP_SHAPE = ["treasure_data", "rudderstack", "zeotap", "custom_http"]  # Braze's own event shape
EXTRA = {"treasure_data": {"database": "currents", "table": "events"}}
LOGIN = {"mparticle": "sandbox-mparticle-key"}


@pytest.fixture(autouse=True)
def no_documented_rate_limits(monkeypatch):
    """The partners' documented rates (Segment 50 requests/s, mParticle 270 batches/s) would
    make every small test hour take seconds; the tests of pacing set their own."""
    from currents_relay.partners.mparticle import MParticle
    from currents_relay.partners.segment import Segment

    monkeypatch.setattr(Segment, "requests_per_second", None)
    monkeypatch.setattr(MParticle, "units_per_second", None)


@pytest.fixture(scope="session")
def ingested_lake(generated_hour, tmp_path_factory):
    landing, _ = generated_hour
    lake = tmp_path_factory.mktemp("delivery-lake")
    process_hour(str(landing), str(lake), parse_hour(HOUR))
    return lake


@pytest.fixture()
def lake(ingested_lake, tmp_path):
    """A private copy of the ingested lake (deliveries write ledgers into it)."""
    copy = tmp_path / "lake"
    shutil.copytree(ingested_lake, copy)
    return copy


@pytest.fixture()
def sandbox(tmp_path):
    with Sandbox(record=tmp_path / "accepted.jsonl") as running:
        yield running


def endpoint(sandbox: Sandbox, name: str, secret: str | None = None, **extra) -> Endpoint:
    """The connection of `name` to its sandbox server; `extra`: more connection extras."""
    sim = sandbox.sims[name]
    return Endpoint(
        sandbox.urls()[name],
        login=LOGIN.get(name),
        password=secret if secret is not None else sim.secret,
        extra=EXTRA.get(name, {}) | extra,
    )
