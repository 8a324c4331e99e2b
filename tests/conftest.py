"""Shared fixtures: the real Braze samples (read in place), generated hours, tmp lakes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SAMPLES = Path(
    os.environ.get(
        "CURRENTS_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "currents-samples"
    )
)
HOUR = "2026-11-01T10"


def _need_samples() -> Path:
    if not (SAMPLES / "Avro").is_dir():
        pytest.skip(f"Braze samples not found at {SAMPLES} (set CURRENTS_SAMPLES)")
    return SAMPLES


@pytest.fixture(scope="session")
def samples() -> Path:
    return _need_samples()


def http_samples() -> list[Path]:
    return sorted((SAMPLES / "custom-http").rglob("*.json")) if SAMPLES.is_dir() else []


def avro_samples() -> list[Path]:
    return sorted((SAMPLES / "Avro").glob("*.avro")) if SAMPLES.is_dir() else []


def load(path: Path) -> dict:
    return json.loads(path.read_text())
