"""The catalogue of Braze Currents event types: their fields, types and lake schemas.

`catalogue.json` (built by `scripts/build_catalogue.py` from Braze's published schemas) holds,
per event type, the union of the Avro and the Custom HTTP fields. This module turns it into
one typed Arrow schema per event type. Unknown event types get the base schema: nothing is
lost, every unknown field goes to the JSON column `extra`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import pyarrow as pa

# In the Custom HTTP format `user` holds only these; everything else sits in `properties`.
USER_FIELDS = ("user_id", "external_user_id", "device_id", "timezone")
LINEAGE_FIELDS = ("source_uri", "source_offset", "ingested_at")

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
}
TIMESTAMP = pa.timestamp("us", tz="UTC")
LINEAGE_SCHEMA = pa.schema(
    [("source_uri", pa.string()), ("source_offset", pa.int64()), ("ingested_at", TIMESTAMP)]
)


@dataclass(frozen=True)
class EventType:
    """One Currents event type as the catalogue knows it."""

    name: str
    fields: dict[str, str]  # field name -> catalogue type name, in canonical order
    pii: frozenset[str] = frozenset()
    http_properties_key: str | None = None  # HTTP nested object stored as JSON in `properties`
    http_names: dict[str, str] = field(default_factory=dict)  # column -> its Custom HTTP name
    known: bool = True
    doc: str = ""

    @property
    def family(self) -> str:
        return family_of(self.name)

    def schema(self) -> pa.Schema:
        """The lake schema: required, timestamp, catalogue fields, extra, lineage."""
        columns = [
            ("event_type", pa.string()),
            ("id", pa.string()),
            ("time", pa.int64()),
            ("timestamp", TIMESTAMP),
        ]
        columns += [
            (name, ARROW_TYPES[kind])
            for name, kind in self.fields.items()
            if name not in ("id", "time")
        ]
        columns.append(("extra", pa.string()))
        return pa.schema(
            columns + list(zip(LINEAGE_SCHEMA.names, LINEAGE_SCHEMA.types, strict=True)),
            metadata={"currents_relay.catalogue_version": catalogue_version()},
        )


def family_of(event_type: str) -> str:
    """Group event types for validation: `users.messages.email.Open` -> `messages.email`."""
    parts = event_type.split(".")
    if parts and parts[0] == "users":
        parts = parts[1:]
    if len(parts) >= 3 and parts[0] == "messages":
        return ".".join(parts[:2])
    return parts[0] if len(parts) > 1 else "other"


@cache
def _raw() -> dict:
    text = resources.files("currents_relay").joinpath("catalogue.json").read_text()
    return json.loads(text)


def catalogue_version() -> str:
    return str(_raw()["version"])


@cache
def lookup(event_type: str) -> EventType:
    """The catalogue entry of `event_type`; unknown types get the base fields only."""
    entry = _raw()["event_types"].get(event_type)
    if entry is None:
        base = {"id": "string", "time": "int64"} | {name: "string" for name in USER_FIELDS}
        return EventType(event_type, base, frozenset({"user_id", "external_user_id"}), known=False)
    return EventType(
        name=event_type,
        fields=dict(entry["fields"]),
        pii=frozenset(entry.get("pii", ())),
        http_properties_key=entry.get("http_properties_key"),
        http_names=dict(entry.get("http_names", {})),
        doc=entry.get("doc", ""),
    )


@cache
def schema_for(event_type: str) -> pa.Schema:
    return lookup(event_type).schema()


def known_event_types() -> list[str]:
    return list(_raw()["event_types"])
