"""Build `include/currents_relay/catalogue.json` from Braze's published Currents schemas.

Reads the Avro writer schemas (`avsc/*.avsc`) and the Custom HTTP connector examples
(`custom-http/**/*.json`) of a checkout of Appboy/currents-examples and writes the union of
both formats' fields per event type, typed. Only names, types and docs are kept, no sample
values. Run it again when Braze publishes a new Currents version:

    python scripts/build_catalogue.py ../shared/currents-samples
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "include" / "currents_relay" / "catalogue.json"
AVRO_TYPES = {
    "string": "string",
    "int": "int64",
    "long": "int64",
    "float": "float64",
    "double": "float64",
    "boolean": "bool",
}
NESTED_JSON = ("custom_properties", "purchase_properties")
# Fields the Custom HTTP connector names differently from the storage export (same value): the
# column keeps the storage name; `http_names` maps it back for the HTTP format.
HTTP_ALIASES = {"canvas_step_message_variation_api_id": "canvas_step_message_variation_id"}


def avro_type(spec: object) -> str:
    """Map an Avro field type (possibly a nullable union) to a catalogue type name."""
    if isinstance(spec, list):
        spec = next(s for s in spec if s != "null")
    if isinstance(spec, dict) and spec.get("type") == "array":
        return "list<" + avro_type(spec["items"]) + ">"
    if isinstance(spec, str) and spec in AVRO_TYPES:
        return AVRO_TYPES[spec]
    raise ValueError(f"unsupported Avro type {spec!r}")


def json_type(value: object) -> str:
    """Infer a catalogue type from an HTTP example value (HTTP-only fields)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, list):
        return "list<string>"
    return "string"


def build(samples: Path) -> dict:
    types: dict[str, dict] = {}
    for path in sorted((samples / "avsc").glob("*.avsc")):
        schema = json.loads(path.read_text())
        entry = types.setdefault(path.stem, {"fields": {}, "pii": [], "doc": schema.get("doc", "")})
        for field in schema["fields"]:
            entry["fields"][field["name"]] = avro_type(field["type"])
            if str(field.get("doc", "")).startswith("[PII]"):
                entry["pii"].append(field["name"])
    for path in sorted((samples / "custom-http").rglob("*.json")):
        event = json.loads(path.read_text())
        entry = types.setdefault(event["event_type"], {"fields": {}, "pii": [], "doc": ""})
        fields = entry["fields"]
        fields.setdefault("id", "string")
        fields.setdefault("time", "int64")
        for name, value in {**event.get("user", {}), **event.get("properties", {})}.items():
            if name in NESTED_JSON:
                entry["http_properties_key"] = name
                fields.setdefault("properties", "string")
            elif name in HTTP_ALIASES and HTTP_ALIASES[name] in fields:
                entry.setdefault("http_names", {})[HTTP_ALIASES[name]] = name
            elif name not in fields:
                fields[name] = json_type(value)
    pii_anywhere = {name for entry in types.values() for name in entry["pii"]}
    for entry in types.values():
        entry["pii"] = sorted(set(entry["pii"]) | (pii_anywhere & set(entry["fields"])))
    return {
        "version": "currents-v10+2026-11",
        "source": "Appboy/currents-examples d6a71e3",
        "event_types": dict(sorted(types.items())),
    }


if __name__ == "__main__":
    catalogue = build(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/currents-samples"))
    OUT.write_text(json.dumps(catalogue, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} with {len(catalogue['event_types'])} event types")
