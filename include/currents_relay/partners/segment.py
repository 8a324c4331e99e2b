"""Segment, through the HTTP Tracking API's batch endpoint.

`POST https://api.segment.io/v1/batch` (EU workspaces: `https://events.eu1.segmentapis.com/v1/batch`;
EU events sent to the US host vanish without an error, so the region is explicit), HTTP Basic
with `base64("<writeKey>:")`. Limits: 500 KB per request, at most 2,500 events (Segment answers
200 to a larger batch but drops it: we never get there), each event under 32 KB (larger ones
are dead-lettered as `too_large`, never sent). 400 for size or JSON errors; 429 with
`Retry-After`. Segment deduplicates on `messageId` (the Currents `id`, < 100 characters) for
about a day, so a resend after a lost acknowledgement is harmless.

Each Currents event becomes a `track` call: `userId` = `external_user_id` (or, when configured,
`anonymousId` = Braze `user_id` so anonymous users are not lost), `event` = a readable name
(`Email Opened`; table below, overridable with `event_names` in destinations.toml),
`timestamp` ISO-8601 UTC from `time`, `properties` (the event's fields; custom and purchase
properties kept nested), `context` (device, os, user agent, timezone, IP, `integration`).

Docs: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#batch ,
https://segment.com/docs/connections/spec/track/ , https://segment.com/docs/connections/spec/common/#context ,
https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/segment/segment_for_currents/
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from currents_relay.catalogue import USER_FIELDS, lookup
from currents_relay.delivery.partner import ConfigurationError, Partner, Request

REGIONS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}

# The event types Braze's Segment (and mParticle) pages list.
BRAZE_PARTNER_EVENT_TYPES = (
    "users.behaviors.Uninstall",
    "users.behaviors.subscription.GlobalStateChange",
    "users.behaviors.subscriptiongroup.StateChange",
    "users.campaigns.Abort",
    "users.campaigns.Conversion",
    "users.campaigns.EnrollInControl",
    "users.canvas.Abort",
    "users.canvas.Conversion",
    "users.canvas.Entry",
    "users.canvas.exit.MatchedAudience",
    "users.canvas.exit.PerformedEvent",
    "users.canvas.experimentstep.Conversion",
    "users.canvas.experimentstep.SplitEntry",
    "users.messages.contentcard.*",
    "users.messages.email.*",
    "users.messages.inappmessage.*",
    "users.messages.pushnotification.*",
    "users.messages.sms.*",
    "users.messages.webhook.*",
    "users.messages.whatsapp.*",
)

CHANNELS = {
    "email": "Email",
    "pushnotification": "Push Notification",
    "sms": "SMS",
    "webhook": "Webhook",
    "whatsapp": "WhatsApp",
    "inappmessage": "In-App Message",
    "contentcard": "Content Card",
    "newsfeedcard": "News Feed Card",
    "banner": "Banner",
    "line": "LINE",
    "rcs": "RCS",
    "liveactivity": "Live Activity",
    "featureflag": "Feature Flag",
    "campaigns": "Campaign",
    "canvas": "Canvas",
    "canvasstep": "Canvas Step",
}
VERBS = {
    "Send": "Sent",
    "Delivery": "Delivered",
    "Open": "Opened",
    "Click": "Clicked",
    "Bounce": "Bounced",
    "SoftBounce": "Soft Bounced",
    "MarkAsSpam": "Marked As Spam",
    "Unsubscribe": "Unsubscribed",
    "Deferral": "Deferred",
    "Abort": "Aborted",
    "Retry": "Retried",
    "Failure": "Failed",
    "Impression": "Viewed",
    "Dismiss": "Dismissed",
    "Read": "Read",
    "Rejection": "Rejected",
    "DeliveryFailure": "Delivery Failed",
    "CarrierSend": "Sent To Carrier",
    "InboundReceive": "Received",
    "ShortLinkClick": "Short Link Clicked",
    "IosForeground": "Opened In Foreground",
    "Conversion": "Converted",
    "Entry": "Entered",
    "EnrollInControl": "Enrolled In Control",
    "Outcome": "Outcome",
}
SPECIAL_NAMES = {
    "users.behaviors.Uninstall": "Application Uninstalled",
    "users.behaviors.subscription.GlobalStateChange": "Subscription State Changed",
    "users.behaviors.subscriptiongroup.StateChange": "Subscription Group State Changed",
    "users.canvas.exit.MatchedAudience": "Canvas Exited On Audience Match",
    "users.canvas.exit.PerformedEvent": "Canvas Exited On Event",
    "users.canvas.experimentstep.Conversion": "Canvas Experiment Step Converted",
    "users.canvas.experimentstep.SplitEntry": "Canvas Experiment Step Entered",
}
CONTEXT_FIELDS = (
    "platform",
    "os_version",
    "device_model",
    "user_agent",
    "ip",
    "timezone",
    "device_id",
    "ad_id",
    "ad_id_type",
    "ad_tracking_enabled",
    "app_id",
)


PROPERTY_SKIP = frozenset(
    (
        "event_type",
        "id",
        "time",
        "timestamp",
        "extra",
        "source_uri",
        "source_offset",
        "ingested_at",
        *USER_FIELDS,
        *CONTEXT_FIELDS,
    )
)
DEVICE_MEMBERS = (  # context.device: key, column (kept when not null)
    ("id", "device_id"),
    ("model", "device_model"),
    ("advertisingId", "ad_id"),
    ("adTrackingEnabled", "ad_tracking_enabled"),
)
OS_MEMBERS = (("name", "platform"), ("version", "os_version"))  # kept when truthy
CONTEXT_MEMBERS = (("userAgent", "user_agent"), ("timezone", "timezone"), ("ip", "ip"))


def event_name(event_type: str, overrides: Mapping[str, str] | None = None) -> str:
    """A readable Segment event name: `users.messages.email.Open` -> `Email Opened`."""
    if overrides and event_type in overrides:
        return overrides[event_type]
    if event_type in SPECIAL_NAMES:
        return SPECIAL_NAMES[event_type]
    parts = event_type.split(".")
    verb = parts[-1]
    channel = parts[-2] if len(parts) >= 2 else ""
    if channel in CHANNELS:
        return f"{CHANNELS[channel]} {VERBS.get(verb, verb)}"
    return " ".join(p[:1].upper() + p[1:] for p in parts[1:] if p) or event_type


def iso_timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def context_of(row: Mapping[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"integration": {"name": "Braze", "version": "currents"}}
    device = {
        k: v
        for k, v in (
            ("id", row.get("device_id")),
            ("model", row.get("device_model")),
            ("advertisingId", row.get("ad_id")),
            ("adTrackingEnabled", row.get("ad_tracking_enabled")),
        )
        if v is not None
    }
    if device:
        context["device"] = device
    os = {k: v for k, v in (("name", row.get("platform")), ("version", row.get("os_version"))) if v}
    if os:
        context["os"] = os
    for source, target in (("user_agent", "userAgent"), ("timezone", "timezone"), ("ip", "ip")):
        if row.get(source):
            context[target] = row[source]
    return context


def properties_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event's own fields; Avro's JSON `properties` comes back as the nested object it was."""
    event_type = lookup(row.get("event_type") or "")
    properties = {k: v for k, v in row.items() if v is not None and k not in PROPERTY_SKIP}
    if "properties" in properties:
        nested = json.loads(properties.pop("properties"))
        properties[event_type.http_properties_key or "properties"] = nested
    if row.get("extra"):
        properties["extra"] = json.loads(row["extra"])
    properties["braze_event_type"] = row.get("event_type")
    return properties


class Segment(Partner):
    name: ClassVar[str] = "segment"
    max_events: ClassVar[int] = 2_500
    max_bytes: ClassVar[int] = 500_000
    max_event_bytes: ClassVar[int | None] = 32_000
    envelope: ClassVar[tuple[bytes, bytes] | None] = (b'{"batch":[', b"]}")
    default_event_types: ClassVar[tuple[str, ...] | None] = BRAZE_PARTNER_EVENT_TYPES
    docs: ClassVar[str] = (
        "https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/"
    )
    # "Segment asks partners to send requests at a maximum rate of 50 requests per second",
    # batch requests included (https://segment.com/docs/partners/streams/, "Rate limits and
    # batching": the page for tools such as Braze that stream their events into Segment).
    requests_per_second: ClassVar[float | None] = 50.0
    max_in_flight: ClassVar[int] = 8

    def validate(self) -> None:
        if self.endpoint.url.rstrip("/") in ("", "https:", "http:"):  # no host: the region's
            region = str(self.endpoint.extra.get("region", "us")).lower()
            if region not in REGIONS:
                raise ConfigurationError(f"segment: extra.region must be one of {sorted(REGIONS)}")
            self.endpoint = replace(self.endpoint, url=REGIONS[region])
        super().validate()
        if not self.endpoint.password:
            raise ConfigurationError(
                "segment: the connection needs the source's write key as its password"
            )

    @property
    def anonymous_id_field(self) -> str | None:
        return self.options.get("anonymous_id_field")  # e.g. "user_id": Braze id as anonymousId

    def wire_event(self, row: Mapping[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "track"}
        if row.get("external_user_id"):
            message["userId"] = row["external_user_id"]
        elif self.anonymous_id_field and row.get(self.anonymous_id_field):
            message["anonymousId"] = row[self.anonymous_id_field]
        message["event"] = event_name(row["event_type"], self.options.get("event_names"))
        message["messageId"] = row["id"]
        message["timestamp"] = iso_timestamp(row["time"])
        message["properties"] = properties_of(row)
        message["context"] = context_of(row)
        return message

    def secrets(self) -> list[str]:
        key = self.endpoint.password or ""
        basic = base64.b64encode(f"{key}:".encode()).decode()
        return [*super().secrets(), basic] if key else super().secrets()

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        basic = base64.b64encode(f"{self.endpoint.password}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        return Request(f"{self.endpoint.url}/v1/batch", headers, body)
