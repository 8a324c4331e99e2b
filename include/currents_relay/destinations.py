"""Which destinations exist (`destinations.toml`) and which partner module serves each.

The file is configuration, not code: `$CURRENTS_RELAY_DESTINATIONS` names it, else the
project's `destinations.toml` (beside `dags/` and `include/`), else `./destinations.toml`.
Standard library only: the DAG reads this at parse time to create one task per destination
(an environment variable, not an Airflow Variable: a Variable read at parse time would hit
the metadata database on every parse).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

ENVIRONMENT = "CURRENTS_RELAY_DESTINATIONS"
PROJECT_FILE = Path(__file__).resolve().parents[2] / "destinations.toml"

PARTNERS = {
    "treasure_data": "currents_relay.partners.treasure_data:TreasureData",
    "rudderstack": "currents_relay.partners.rudderstack:RudderStack",
    "zeotap": "currents_relay.partners.zeotap:Zeotap",
    "custom_http": "currents_relay.partners.custom_http:CustomHttp",
    "segment": "currents_relay.partners.segment:Segment",
    "mparticle": "currents_relay.partners.mparticle:MParticle",
}


@dataclass(frozen=True)
class Destination:
    name: str
    partner: str
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def pool(self) -> str:
        return f"currents_{self.name}"

    def partner_class(self) -> type:
        module, _, attribute = PARTNERS[self.partner].partition(":")
        return getattr(import_module(module), attribute)


def destinations_file() -> Path:
    """The destinations file in use (see the module's notes)."""
    named = os.environ.get(ENVIRONMENT)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{ENVIRONMENT}={named}: no such file")
        return path
    for candidate in (PROJECT_FILE, Path.cwd() / "destinations.toml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no destinations.toml: set {ENVIRONMENT} to its path, or run from the project"
    )


def destinations() -> dict[str, Destination]:
    """Every configured destination, enabled or not, by name."""
    path = destinations_file()
    return _parse(str(path), path.stat().st_mtime_ns)


@cache
def _parse(path: str, _mtime: int) -> dict[str, Destination]:
    try:
        tables = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: {error}") from None
    out = {}
    for name, table in tables.items():
        options = {k: v for k, v in table.items() if k not in ("partner", "enabled")}
        partner = table.get("partner", name)
        if partner not in PARTNERS:
            raise ValueError(
                f"{path}: destination {name!r}: unknown partner {partner!r} "
                f"(known: {sorted(PARTNERS)})"
            )
        out[name] = Destination(name, partner, bool(table.get("enabled", True)), options)
    return out


def enabled_destinations() -> list[Destination]:
    return [d for d in destinations().values() if d.enabled]
