"""Per-destination PII policy: pass, hash (SHA-256, as partners expect for matching) or drop.

Applies to the fields Braze's Currents schemas mark `[PII]` (e-mail, phone, user agent, IP,
names, advertising ids...), never to the identity fields a partner needs to attribute the
event (`user_id`, `external_user_id`, `device_id`). Configure in `destinations.toml`:
`pii = "hash"` for every PII field, or `pii = { default = "pass", email_address = "hash" }`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from currents_relay.catalogue import lookup

IDENTITY_FIELDS = frozenset(("user_id", "external_user_id", "device_id"))
ACTIONS = ("pass", "hash", "drop")


def normalize_for_hash(name: str, value: str) -> str:
    """Partners match on normalized values: trimmed lower-case e-mails, digits-only phones."""
    if "email" in name:
        return value.strip().lower()
    if "phone" in name:
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value.strip()


@dataclass(frozen=True)
class PiiPolicy:
    default: str = "pass"
    fields: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PiiPolicy:
        raw = options.get("pii", "pass")
        policy = (
            cls(raw)
            if isinstance(raw, str)
            else cls(raw.get("default", "pass"), {k: v for k, v in raw.items() if k != "default"})
        )
        bad = {a for a in (policy.default, *policy.fields.values()) if a not in ACTIONS}
        if bad:
            raise ValueError(f"pii policy: unknown action(s) {sorted(bad)}; use one of {ACTIONS}")
        return policy

    @property
    def active(self) -> bool:
        return self.default != "pass" or any(a != "pass" for a in self.fields.values())

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        if not self.active:
            return row
        out = dict(row)
        for name in lookup(row.get("event_type") or "").pii - IDENTITY_FIELDS:
            action = self.fields.get(name, self.default)
            value = out.get(name)
            if value is None or action == "pass":
                continue
            if action == "drop":
                del out[name]
            elif isinstance(value, str):
                out[name] = hashlib.sha256(normalize_for_hash(name, value).encode()).hexdigest()
        return out
