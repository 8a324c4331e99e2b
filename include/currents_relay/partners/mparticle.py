"""mParticle, through the server-to-server Events API.

`POST https://s2s.<pod>.mparticle.com/v2/bulkevents` (pods `us1` (also `s2s.mparticle.com`),
`us2`, `eu1`, `au1`), HTTP Basic `key:secret`, one pair per input feed. The request is a JSON
array of batches: at most 100 batches, each under 128 KB, the whole request under 256 KB.
Success is 202 Accepted, also when mParticle later drops some batches (it validates them
asynchronously; look at mParticle's live stream/error log for those); 401 missing and 403
invalid credentials stop the task; 429 may carry `Retry-After`. At most 100 attributes per
event, values up to 4,096 characters: longer values are truncated and extra attributes are
dropped, both counted in the report's `adjusted` (never silently).

One mParticle batch per user: `environment`, `user_identities.customer_id` =
`external_user_id`, `source_request_id` (mParticle deduplicates requests on it: derived from
the batch id, so a resend carries the same one), and `events[]` of `custom_event` with
`data.event_name`, `data.custom_event_type` (from mParticle's fixed list),
`data.custom_attributes`, `data.timestamp_unixtime_ms`, `data.source_message_id` = Currents `id`.

Feeds: the connection's login/password are the Unbound feed (events with no platform: e-mail,
SMS, webhooks...); `extra.feeds` holds `{"ios"|"android"|"web": {"key": ..., "secret": ...}}`.
An event goes to its platform's feed, or to the Unbound feed when that platform has none.

Docs: https://docs.mparticle.com/developers/apis/http/ ,
https://docs.mparticle.com/developers/apis/json-reference/ ,
https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/mparticle/mparticle_for_currents/
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from currents_relay.delivery.partner import ConfigurationError, Endpoint, Partner, Request
from currents_relay.partners.segment import BRAZE_PARTNER_EVENT_TYPES, event_name

PODS = {
    "us1": "https://s2s.us1.mparticle.com",
    "us2": "https://s2s.us2.mparticle.com",
    "eu1": "https://s2s.eu1.mparticle.com",
    "au1": "https://s2s.au1.mparticle.com",
}
FEEDS = ("ios", "android", "web")
UNBOUND = "unbound"
CUSTOM_EVENT_TYPES = (
    "navigation",
    "location",
    "search",
    "transaction",
    "user_content",
    "user_preference",
    "social",
    "media",
    "attribution",
    "other",
)
EVENT_TYPE_CATEGORY = {
    "users.behaviors.Purchase": "transaction",
    "users.behaviors.Location": "location",
    "users.behaviors.InstallAttribution": "attribution",
    "users.behaviors.subscription.GlobalStateChange": "user_preference",
    "users.behaviors.subscriptiongroup.StateChange": "user_preference",
}
MAX_ATTRIBUTES = 100
MAX_VALUE_CHARS = 4_096
MAX_BATCH_BYTES = 120_000  # under mParticle's 128 KB per batch, with room for the envelope
SKIP_ATTRIBUTES = {
    "extra",
    "event_type",
    "id",
    "time",
    "timestamp",
    "external_user_id",
    "source_uri",
    "source_offset",
    "ingested_at",
}


def attribute_text(value: Any) -> str:
    """An attribute value as mParticle takes it: a string (others as their JSON)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)  # what json.dumps writes, 10x faster
    return json.dumps(value)


WIRE_HEAD = b'{"customer_id":'
WIRE_SPLIT = b'","event":'


def split_wire_event(encoded: bytes) -> tuple[str, bytes]:
    """(customer id, event JSON) of an encoded `wire_event`, without parsing the event: the
    customer id is a JSON string or null, and `","event":` cannot occur inside a JSON string
    (a quote there is always escaped), so its first occurrence ends the id."""
    assert encoded.startswith(WIRE_HEAD), "not an encoded mParticle wire event"
    if encoded.startswith(b"null,", len(WIRE_HEAD)):
        return "", encoded[len(WIRE_HEAD) + len(b'null,"event":') : -1]
    end = encoded.index(WIRE_SPLIT, len(WIRE_HEAD)) + 1
    return orjson.loads(encoded[len(WIRE_HEAD) : end]), encoded[end + len(WIRE_SPLIT) - 1 : -1]


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
        if self.endpoint.url.rstrip("/") in ("", "https:", "http:"):
            pod = str(self.endpoint.extra.get("pod", "us1")).lower()
            if pod not in PODS:
                raise ConfigurationError(f"mparticle: extra.pod must be one of {sorted(PODS)}")
            self.endpoint = Endpoint(
                PODS[pod], self.endpoint.login, self.endpoint.password, self.endpoint.extra
            )
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
            values += [secret, base64.b64encode(f"{key}:{secret}".encode()).decode()]
        return [*super().secrets(), *values]

    def route(self, row: Mapping[str, Any]) -> str:
        platform = str(row.get("platform") or "").lower()
        return platform if platform in FEEDS and platform in self.credentials() else UNBOUND

    def _attributes(self, row: Mapping[str, Any]) -> dict[str, str]:
        attributes: dict[str, str] = {}
        for name, value in row.items():
            if value is None or name in SKIP_ATTRIBUTES:
                continue
            if len(attributes) >= MAX_ATTRIBUTES:
                self.adjustments["attributes_dropped"] += 1
                continue
            text = attribute_text(value)
            if len(text) > MAX_VALUE_CHARS:
                text = text[:MAX_VALUE_CHARS]
                self.adjustments["values_truncated"] += 1
            attributes[name] = text
        return attributes

    def wire_event(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One `custom_event`, with the user it belongs to (grouped into batches in `body`)."""
        return {
            "customer_id": row.get("external_user_id"),
            "event": {
                "event_type": "custom_event",
                "data": {
                    "event_name": event_name(row["event_type"], self.options.get("event_names")),
                    "custom_event_type": EVENT_TYPE_CATEGORY.get(row["event_type"], "other"),
                    "custom_attributes": self._attributes(row),
                    "timestamp_unixtime_ms": int(row["time"]) * 1000,
                    "source_message_id": row["id"],
                },
            },
        }

    def body(self, events: list[bytes], batch_id: str = "") -> bytes:
        """A JSON array of batches: one per user (split if a user's batch would pass 120 KB)."""
        environment = self.endpoint.extra.get("environment", "production")
        by_user: dict[str, list[list[bytes]]] = {}
        sizes: dict[str, int] = {}
        for encoded in events:
            user, event = split_wire_event(encoded)
            chunks = by_user.setdefault(user, [[]])
            if sizes.get(user, 0) + len(event) > MAX_BATCH_BYTES and chunks[-1]:
                chunks.append([])
                sizes[user] = 0
            chunks[-1].append(event)
            sizes[user] = sizes.get(user, 0) + len(event) + 1
        batches = []
        for user, chunks in by_user.items():
            for chunk in chunks:
                envelope = {
                    "environment": environment,
                    "user_identities": {"customer_id": user},
                    "source_request_id": f"{batch_id}-{len(batches)}" if batch_id else None,
                }
                head = orjson.dumps(envelope)[:-1]
                batches.append(head + b',"events":[' + b",".join(chunk) + b"]}")
        return b"[" + b",".join(batches) + b"]"

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        key, secret = self.credentials()[route or UNBOUND]
        basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        batches = body.count(b'{"environment":')  # the unit mParticle's rate limit counts
        return Request(f"{self.endpoint.url}/v2/bulkevents", headers, body, units=batches)
