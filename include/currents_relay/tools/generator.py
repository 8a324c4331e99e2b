"""A realistic demo hour of Currents exports, for `make run`, tests and benchmarks.

Writes both formats the way Braze does: Avro object-container files under
`dataexport.<cluster>.S3.integration.<id>/event_type=<t>/date=<H>/<schema-id>/<zone>/`, and
Custom HTTP connector bodies of up to 100 events under `http/date=<H>/`. It mixes in what real
hours hold: duplicates (at-least-once delivery), anonymous users, a newer schema id with an
added field, an unknown event type, an unknown field, and a few bad rows and bad files, all
counted in the returned summary so tests can reconcile against it.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fastavro

from currents_relay.catalogue import lookup
from currents_relay.filesystems import filesystem
from currents_relay.hours import date_partition
from currents_relay.ingest.normalize import to_http

DEMO_EVENT_TYPES = (
    "users.behaviors.CustomEvent",
    "users.behaviors.Purchase",
    "users.behaviors.app.SessionStart",
    "users.behaviors.app.SessionEnd",
    "users.behaviors.Location",
    "users.behaviors.Uninstall",
    "users.behaviors.subscription.GlobalStateChange",
    "users.campaigns.Conversion",
    "users.canvas.Entry",
    "users.canvas.exit.PerformedEvent",
    "users.canvasstep.Progression",
    "users.messages.email.Send",
    "users.messages.email.Delivery",
    "users.messages.email.Open",
    "users.messages.email.Click",
    "users.messages.email.Bounce",
    "users.messages.pushnotification.Send",
    "users.messages.pushnotification.Open",
    "users.messages.sms.Send",
    "users.messages.sms.Delivery",
    "users.messages.inappmessage.Impression",
    "users.messages.contentcard.Impression",
    "users.messages.webhook.Send",
    "users.profile.Update",
)
AVRO_TYPES = {"string": "string", "int64": "long", "float64": "double", "bool": "boolean"}
PLATFORMS = ("ios", "android", "web")
BAD_ROW_KINDS = ("missing_id", "time_not_integer", "malformed_email", "wrong_type", "empty_id")


@dataclass
class GeneratedHour:
    """What was written, so a run over it can be reconciled."""

    files: int = 0
    events: int = 0  # events in readable files (what `events.read` must say)
    duplicates: int = 0
    bad_rows: int = 0
    bad_files: int = 0
    by_event_type: dict[str, int] = field(default_factory=dict)  # unique valid events per type

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"by_event_type": dict(sorted(self.by_event_type.items()))}


def fake_value(name: str, kind: str, rng: random.Random, user: int) -> Any:
    """A plausible value for a Currents field, from its name and type."""
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int64":
        return rng.randrange(1, 1000)
    if kind == "float64":
        return round(rng.uniform(0.5, 200.0), 2)
    if kind.startswith("list"):
        return [f"{name}-{rng.randrange(10)}"]
    if name == "email_address":
        return f"user{user}@example.com"
    if "phone_number" in name:
        return f"+1415555{user % 10000:04d}"
    if name == "platform":
        return rng.choice(PLATFORMS)
    if name == "timezone":
        return rng.choice(("America/New_York", "Europe/Paris", "Asia/Tokyo"))
    if name in ("properties", "custom_attributes", "flow_response_json"):
        return json.dumps(
            {"plan": rng.choice(("free", "pro")), "score": rng.randrange(100), "tags": ["a"]}
        )
    if name == "currency":
        return "USD"
    if name.endswith("_id"):
        return f"{rng.getrandbits(128):032x}"[:24]
    return f"{name}_{rng.randrange(50)}"


class _Writer:
    def __init__(self, landing_url: str, hour: datetime) -> None:
        self.fs, self.root = filesystem(landing_url)
        self.date = date_partition(hour)

    def put(self, relative: str, data: bytes) -> None:
        path = f"{self.root}/{relative}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)


def avro_schema(event_type: str, added: tuple[str, ...] = ()) -> dict[str, Any]:
    """An Avro writer schema for an event type, as Currents writes it (optional fields nullable)."""
    fields = []
    for name, kind in lookup(event_type).fields.items():
        avro = {"type": "array", "items": "string"} if kind.startswith("list") else AVRO_TYPES[kind]
        if name in ("id", "time"):
            fields.append({"name": name, "type": avro})
        else:
            fields.append({"name": name, "type": ["null", avro], "default": None})
    fields += [{"name": name, "type": ["null", "string"], "default": None} for name in added]
    return {"type": "record", "name": f"dataexport.S3.inner.{event_type}", "fields": fields}


def avro_file(
    event_type: str, rows: list[dict[str, Any]], rng: random.Random, added: tuple[str, ...] = ()
) -> bytes:
    """An Avro object-container file of canonical rows of one event type, as Currents writes it."""
    buffer = io.BytesIO()
    records = [{k: v for k, v in row.items() if k != "event_type"} for row in rows]
    schema = fastavro.parse_schema(avro_schema(event_type, added))
    fastavro.writer(buffer, schema, records, sync_marker=rng.randbytes(16))
    return buffer.getvalue()


FULL_PROPERTIES = {"città": "Zürich", "名前": "テスト", "plan": "pro", "score": 42, "tags": ["a"]}


def make_event(
    event_type: str, rng: random.Random, hour: datetime, users: int, full: bool = False
) -> dict[str, Any]:
    """One canonical row (flat) for `event_type`; `full`: every field filled, custom
    properties with non-ASCII keys (as in the real samples), else ~15% of optional fields
    absent."""
    user = rng.randrange(users)
    row: dict[str, Any] = {"event_type": event_type}
    for name, kind in lookup(event_type).fields.items():
        if (
            not full
            and rng.random() < 0.15
            and name not in ("id", "time", "user_id", "email_address")
        ):
            continue  # optional fields are often absent
        row[name] = fake_value(name, kind, rng, user)
        if full and name in ("properties", "custom_attributes"):
            row[name] = json.dumps(
                FULL_PROPERTIES | {"score": rng.randrange(100)}, ensure_ascii=False
            )
    row["id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    row["time"] = int(hour.timestamp()) + rng.randrange(3600)
    row["user_id"] = f"{user:024x}"
    if rng.random() < 0.9:
        row["external_user_id"] = f"user-{user}"
    else:
        row.pop("external_user_id", None)  # anonymous user
    return row


def _bad_event(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    event = json.loads(json.dumps(event))
    if kind == "missing_id":
        event.pop("id")
    elif kind == "empty_id":
        event["id"] = ""
    elif kind == "time_not_integer":
        event["time"] = "yesterday"
    elif kind == "malformed_email":
        event["event_type"] = "users.messages.email.Open"
        event["properties"]["email_address"] = "not-an-email"
    elif kind == "wrong_type":
        event["user"]["external_user_id"] = {"nested": True}
    return event


def generate_hour(
    landing_url: str,
    hour: datetime,
    events: int = 30_000,
    seed: int = 7,
    avro_share: float = 0.6,
    users: int = 2_000,
    faults: bool = True,
    file_events: int = 5_000,
    full_fields: bool = False,
    http_lines: bool = False,
) -> GeneratedHour:
    """Write one hour of exports (both formats) under `landing_url`; return what was written.
    `full_fields`: every schema field filled (see `make_event`); `http_lines`: Custom HTTP
    events as JSON-lines files of 1,000 events instead of `{"events": [...]}` bodies of 100.
    The same seed and hour give the same files; other hours get other event ids."""
    rng = random.Random(f"{seed}:{hour.astimezone(UTC).strftime('%Y-%m-%dT%H')}")
    out = _Writer(landing_url, hour)
    summary = GeneratedHour()
    prefix = "dataexport.prod-03.S3.integration.5f1c2a9e8b7d6c001a2b3c4d"
    http_rows: list[dict[str, Any]] = []
    per_type = max(1, events // len(DEMO_EVENT_TYPES))
    for t_index, event_type in enumerate(DEMO_EVENT_TYPES):
        rows = [make_event(event_type, rng, hour, users, full_fields) for _ in range(per_type)]
        summary.by_event_type[event_type] = len(rows)
        split = int(len(rows) * avro_share)
        avro_rows, http_rows_t = rows[:split], rows[split:]
        http_rows += http_rows_t
        for f_index, start in enumerate(range(0, len(avro_rows), file_events)):
            chunk = avro_rows[start : start + file_events]
            added = ("ad_campaign_v2",) if t_index == 0 and f_index > 0 else ()  # a newer schema id
            if added:
                for row in chunk:
                    row["ad_campaign_v2"] = "spring"
            data = avro_file(event_type, chunk, rng, added)
            schema_id = 1 + len(added)
            out.put(
                f"{prefix}/event_type={event_type}/date={out.date}/{schema_id}/us-east-1/"
                f"{uuid.UUID(int=rng.getrandbits(128))}.avro",
                data,
            )
            summary.files += 1
            summary.events += len(chunk)
    # At-least-once delivery: some events arrive twice (in another batch).
    duplicates = [dict(row) for row in rng.sample(http_rows, k=max(1, len(http_rows) // 100))]
    http_events = [to_http(row) for row in http_rows + duplicates]
    summary.duplicates = len(duplicates)
    if faults:
        unknown = {
            "event_type": "users.messages.hologram.Beam",
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "time": int(hour.timestamp()) + 5,
            "user": {"user_id": "u1", "external_user_id": "user-1"},
            "properties": {"beam_id": "b1"},
        }
        http_events.append(unknown)
        summary.by_event_type[unknown["event_type"]] = 1
        http_events[0] = http_events[0] | {"braze_internal_note": "an unknown top-level field"}
        for i, kind in enumerate(BAD_ROW_KINDS):
            http_events.append(_bad_event(kind, http_events[1 + i]))
            summary.bad_rows += 1
    rng.shuffle(http_events)
    per_file = 1_000 if http_lines else 100
    for batch, start in enumerate(range(0, len(http_events), per_file)):
        chunk = http_events[start : start + per_file]
        if http_lines:
            lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chunk)
            out.put(f"http/date={out.date}/batch-{batch:05d}.ndjson", lines.encode())
        else:
            body = json.dumps({"events": chunk}, ensure_ascii=False).encode()
            out.put(f"http/date={out.date}/batch-{batch:05d}.json", body)
        summary.files += 1
    summary.events += len(http_events)
    if faults:
        out.put(f"http/date={out.date}/batch-broken.json", b'{"events": [{"id": "x", ')
        opens = "users.messages.email.Open"
        whole = avro_file(opens, [make_event(opens, rng, hour, users) for _ in range(50)], rng)
        out.put(
            f"{prefix}/event_type={opens}/date={out.date}/1/us-east-1/truncated.avro",
            whole[: len(whole) // 2],
        )
        summary.files += 2
        summary.bad_files += 2
    return summary
