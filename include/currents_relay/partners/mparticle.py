"""mParticle, through the server-to-server Events API.

`POST https://s2s.<pod>.mparticle.com/v2/bulkevents` (pods `us1` (also `s2s.mparticle.com`),
`us2`, `eu1`, `au1`), HTTP Basic `key:secret`, one pair per input feed. The request is a JSON
array of batches: at most 100 batches, each under 128 KB, the whole request under 256 KB.
Success is 202 Accepted, also when mParticle later drops some batches (it validates them
asynchronously; look at mParticle's live stream/error log for those); 401 missing and 403
invalid credentials stop the task; 429 may carry `Retry-After`. At most 100 attributes per
event, values up to 4,096 characters: longer values are truncated and extra attributes are
dropped, both counted in the report's `adjusted` (never silently).

Each Currents event becomes what Braze's own mParticle integration sends (Braze's Currents event
glossary, mParticle tabs):

| batch / event | from |
| --- | --- |
| `user_identities.customerid` | `external_user_id` |
| `user_identities.email` | `email_address` (email events) |
| `user_attributes.$mobile` | the event's phone number (SMS, WhatsApp, RCS events) |
| `device_info.ios_idfv` (`android_uuid` on Android) | `device_id`, where it is a UUID (mParticle's format) |
| `device_info.ios_advertising_id` / `android_advertising_id` / `roku_advertising_id` | `ad_id`, by `ad_id_type` |
| `device_info.push_token`, `device_info.device_model` | `push_token`, `device_model` |
| `schema_version`, `environment` | 2, the connection's `extra.environment` |
| `events[].event_type` | `uninstall` for `users.behaviors.Uninstall`, else `custom_event` |
| `data.event_name` | Braze's mParticle name (`Email Deliveries`; `EVENT_NAMES`, `event_name`) |
| `data.custom_event_type` | `other` (Braze: "always 'other'") |
| `data.custom_attributes` | the other fields (numbers and booleans as JSON numbers and booleans, lists and objects as JSON text) and `source_request_id` = `id` |
| `data.source_message_id`, `data.timestamp_unixtime_ms` | `id`, `time` x 1000 |

Braze leaves the Braze `user_id`, `timezone` and `sending_ip` out; so does this mapping. One
batch per user and device; its `source_request_id` (mParticle deduplicates requests on it) is
derived from the batch id, so a resend carries the same one.

Events older than 30 days (a replay or backfill of an old hour) go to
`/v2/bulkevents/historical`, mParticle's endpoint for them (it loads them into profiles and the
warehouse; it may not forward them to real-time outputs), counted in the report's
`adjusted.historical`; `historical = "realtime"` in destinations.toml sends them to
`/v2/bulkevents` like the rest.

Feeds: the connection's login/password are the Unbound feed (events with no platform: e-mail,
SMS, webhooks...); `extra.feeds` holds `{"ios"|"android"|"web": {"key": ..., "secret": ...}}`.
An event goes to its platform's feed, or to the Unbound feed when that platform has none.

Docs: https://docs.mparticle.com/developers/apis/http/ ,
https://docs.mparticle.com/developers/apis/json-reference/ ,
https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/mparticle/mparticle_for_currents/
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from currents_relay.delivery.partner import ConfigurationError, Partner, Request, basic
from currents_relay.partners.segment import (
    BRAZE_PARTNER_EVENT_TYPES,
    CHANNELS,
    NOT_PROPERTIES,
    phone_of,
)

PODS = {
    "us1": "https://s2s.us1.mparticle.com",
    "us2": "https://s2s.us2.mparticle.com",
    "eu1": "https://s2s.eu1.mparticle.com",
    "au1": "https://s2s.au1.mparticle.com",
}
FEEDS = ("ios", "android", "web")
UNBOUND = "unbound"
NOT_ATTRIBUTES = NOT_PROPERTIES  # the same fields go elsewhere than the event's own
HISTORICAL_SECONDS = 30 * 86_400  # older events go to /v2/bulkevents/historical
HISTORICAL = "/historical"
# Braze's own names where the plural of "<channel> <action>" is not it.
EVENT_NAMES = {
    "users.behaviors.Uninstall": "Application Uninstalls",
    "users.behaviors.subscription.GlobalStateChange": "Global Subscription State Changes",
    "users.behaviors.subscriptiongroup.StateChange": "Subscription Group State Changes",
}
AD_IDS = {
    "ios_idfa": "ios_advertising_id",
    "google_ad_id": "android_advertising_id",
    "roku_ad_id": "roku_advertising_id",
}
MAX_ATTRIBUTES = 100
MAX_VALUE_CHARS = 4_096
MAX_BATCH_BYTES = 120_000  # under mParticle's 128 KB per batch, with room for the envelope


def _plural(words: str) -> str:
    if words.endswith("y") and words[-2:-1] not in "aeiou":
        return words[:-1] + "ies"
    return words + ("es" if words.endswith(("s", "x", "ch", "sh")) else "s")


def event_name(event_type: str, overrides: Mapping[str, str] | None = None) -> str:
    """Braze's mParticle name of an event type: `users.messages.email.Delivery` -> `Email
    Deliveries`."""
    named = (overrides or {}).get(event_type) or EVENT_NAMES.get(event_type)
    if named:
        return named
    parts = event_type.split(".")
    action = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", parts[-1])
    channel = CHANNELS.get(parts[-2], "") if len(parts) >= 2 else ""
    return _plural(f"{channel} {action}".strip())


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return value is not None


def attribute_value(value: Any) -> str | int | float | bool:
    """An attribute value as mParticle takes it: strings, numbers and booleans as they are,
    lists and objects as their JSON."""
    return value if type(value) in (str, int, float, bool) else json.dumps(value)


WIRE_HEAD = b'{"batch":{'
WIRE_SPLIT = b'},"event":'


def split_wire_event(encoded: bytes) -> tuple[bytes, bytes]:
    """(the batch members' JSON, the event's JSON) of an encoded `wire_event`, without parsing
    it: the batch object holds no key `event`, and `,"event":` cannot occur inside a JSON string
    (a quote there is always escaped), so the first `},"event":` ends the batch object."""
    assert encoded.startswith(WIRE_HEAD), "not an encoded mParticle wire event"
    end = encoded.index(WIRE_SPLIT, len(WIRE_HEAD))
    return encoded[len(WIRE_HEAD) : end], encoded[end + len(WIRE_SPLIT) : -1]


class MParticle(Partner):
    name: ClassVar[str] = "mparticle"
    max_events: ClassVar[int] = 100  # so a request never holds more than 100 (per-user) batches
    max_bytes: ClassVar[int] = 200_000  # 256 KB limit minus up to 100 batch envelopes
    event_overhead: ClassVar[int] = 120  # a batch envelope per event, at worst
    envelope: ClassVar[tuple[bytes, bytes] | None] = None  # `body` groups events by user
    default_event_types: ClassVar[tuple[str, ...] | None] = BRAZE_PARTNER_EVENT_TYPES
    acknowledgement: ClassVar[str] = (
        "accepted: mParticle answers 202 and may drop invalid batches later"
    )
    confirms: ClassVar[bool] = False
    # "Events API: 270 batches per second" per account by default (a batch: one user's
    # events; https://docs.mparticle.com/guides/default-service-limits/); requests are not
    # limited beyond it.
    units_per_second: ClassVar[float | None] = 270.0

    def validate(self) -> None:
        self.host_from_extra("pod", PODS, "us1")
        super().validate()
        if UNBOUND not in self.credentials():
            raise ConfigurationError(
                "mparticle: the connection needs the Unbound feed's key/secret as login/password "
                "(events without a platform feed go there)"
            )
        environment = self.endpoint.extra.get("environment", "production")
        if environment not in ("production", "development"):
            raise ConfigurationError(
                "mparticle: extra.environment must be production or development"
            )

    def credentials(self) -> dict[str, tuple[str, str]]:
        """Feed -> (key, secret), for the feeds the connection holds."""
        feeds: dict[str, tuple[str, str]] = {}
        if self.endpoint.login and self.endpoint.password:
            feeds[UNBOUND] = (self.endpoint.login, self.endpoint.password)
        for feed, pair in dict(self.endpoint.extra.get("feeds") or {}).items():
            if pair and pair.get("key") and pair.get("secret"):
                feeds[feed.lower()] = (pair["key"], pair["secret"])
        return feeds

    def secrets(self) -> list[str]:
        values = []
        for key, secret in self.credentials().values():
            values += [secret, basic(key, secret)]
        return [*super().secrets(), *values]

    def route(self, row: Mapping[str, Any]) -> str:
        """The feed (its platform's, else Unbound), and `/historical` for an event older
        than 30 days (unless `historical = "realtime"`)."""
        platform = str(row.get("platform") or "").lower()
        feed = platform if platform in FEEDS and platform in self.credentials() else UNBOUND
        old = time.time() - int(row["time"]) > HISTORICAL_SECONDS
        if old and self.options.get("historical", "historical") != "realtime":
            self.adjustments["historical"] += 1
            return feed + HISTORICAL
        return feed

    def _attributes(self, row: Mapping[str, Any]) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        for name, value in row.items():
            if value is None or name in NOT_ATTRIBUTES:
                continue
            if len(attributes) >= MAX_ATTRIBUTES - 1:
                self.adjustments["attributes_dropped"] += 1
                continue
            value = attribute_value(value)
            if type(value) is str and len(value) > MAX_VALUE_CHARS:
                value = value[:MAX_VALUE_CHARS]
                self.adjustments["values_truncated"] += 1
            attributes[name] = value
        if row.get("extra"):
            attributes["extra"] = row["extra"][:MAX_VALUE_CHARS]
        attributes["source_request_id"] = row["id"]
        return attributes

    @staticmethod
    def _batch_of(row: Mapping[str, Any]) -> dict[str, Any]:
        """The batch members that say whose event it is: identities, attributes, device."""
        pairs = (("customerid", row.get("external_user_id")), ("email", row.get("email_address")))
        identities = {name: value for name, value in pairs if value}
        device: dict[str, Any] = {}
        if _is_uuid(row.get("device_id")):  # mParticle refuses a device id that is not a UUID
            android = str(row.get("platform") or "").lower() == "android"
            device["android_uuid" if android else "ios_idfv"] = row["device_id"]
        if row.get("ad_id") and row.get("ad_id_type") in AD_IDS:
            device[AD_IDS[row["ad_id_type"]]] = row["ad_id"]
        if row.get("push_token"):
            device["push_token"] = row["push_token"]
        if row.get("device_model"):
            device["device_model"] = row["device_model"]
        phone = phone_of(row)
        return {
            "user_identities": identities,
            "user_attributes": {"$mobile": phone} if phone else {},
            "device_info": device,
        }

    def wire_event(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One event, with the batch it belongs to (grouped into batches in `body`)."""
        data: dict[str, Any] = {}
        uninstall = row["event_type"] == "users.behaviors.Uninstall"
        if not uninstall:
            data["event_name"] = event_name(row["event_type"], self.options.get("event_names"))
            data["custom_event_type"] = "other"
        data["custom_attributes"] = self._attributes(row)
        data["source_message_id"] = row["id"]
        data["timestamp_unixtime_ms"] = int(row["time"]) * 1000
        event_type = "uninstall" if uninstall else "custom_event"
        return {"batch": self._batch_of(row), "event": {"event_type": event_type, "data": data}}

    def body(self, events: list[bytes], batch_id: str = "") -> bytes:
        """A JSON array of batches: one per user and device (split if one would pass 120 KB)."""
        environment = orjson.dumps(self.endpoint.extra.get("environment", "production"))
        by_batch: dict[bytes, list[list[bytes]]] = {}
        sizes: dict[bytes, int] = {}
        for encoded in events:
            members, event = split_wire_event(encoded)
            chunks = by_batch.setdefault(members, [[]])
            if sizes.get(members, 0) + len(event) > MAX_BATCH_BYTES and chunks[-1]:
                chunks.append([])
                sizes[members] = 0
            chunks[-1].append(event)
            sizes[members] = sizes.get(members, 0) + len(event) + 1
        batches = []
        for members, chunks in by_batch.items():
            for chunk in chunks:
                request_id = orjson.dumps(f"{batch_id}-{len(batches)}" if batch_id else None)
                batches.append(
                    b'{"schema_version":2,"environment":'
                    + environment
                    + b","
                    + members
                    + b',"source_request_id":'
                    + request_id
                    + b',"events":['
                    + b",".join(chunk)
                    + b"]}"
                )
        return b"[" + b",".join(batches) + b"]"

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        feed, _, historical = (route or UNBOUND).partition("/")
        key, secret = self.credentials()[feed]
        credential = basic(key, secret)
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {credential}"}
        batches = body.count(b'{"schema_version":2,')  # the unit mParticle's rate limit counts
        path = "/v2/bulkevents" + (HISTORICAL if historical else "")
        return Request(f"{self.endpoint.url}{path}", headers, body, units=batches)
