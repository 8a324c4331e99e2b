"""Which destinations exist (`destinations.toml`) and which partner module serves each.

Standard library only: the DAG reads this at parse time to create one task per destination.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module, resources
from typing import Any

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
    def conn_id(self) -> str:
        return f"currents_{self.name}"

    @property
    def pool(self) -> str:
        return f"currents_{self.name}"

    def partner_class(self) -> type:
        module, _, attribute = PARTNERS[self.partner].partition(":")
        return getattr(import_module(module), attribute)


@cache
def destinations() -> dict[str, Destination]:
    """Every configured destination, enabled or not, by name."""
    text = resources.files("currents_relay").joinpath("destinations.toml").read_text()
    out = {}
    for name, table in tomllib.loads(text).items():
        options = {k: v for k, v in table.items() if k not in ("partner", "enabled")}
        partner = table.get("partner", name)
        if partner not in PARTNERS:
            raise ValueError(
                f"destination {name!r}: unknown partner {partner!r} (known: {sorted(PARTNERS)})"
            )
        out[name] = Destination(name, partner, bool(table.get("enabled", True)), options)
    return out


def enabled_destinations() -> list[Destination]:
    return [d for d in destinations().values() if d.enabled]
