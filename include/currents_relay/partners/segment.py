"""Segment, through the HTTP Tracking API's batch endpoint.

`POST https://api.segment.io/v1/batch` (EU workspaces: `https://events.eu1.segmentapis.com/v1/batch`;
EU events sent to the US host vanish without an error, so the region is explicit), HTTP Basic
with `base64("<writeKey>:")`. Limits: 500 KB per request, at most 2,500 events (Segment answers
200 to a larger batch but drops it: we never get there), each event under 32 KB (larger ones
are dead-lettered as `too_large`, never sent). 400 for size or JSON errors; 429 with
`Retry-After`. Segment deduplicates on `messageId` (the Currents `id`, < 100 characters) for
about a day, so a resend after a lost acknowledgement is harmless.

Each Currents event becomes the `track` call Braze's own Segment integration sends (Braze's
Currents event glossary, Segment tabs, and its "Segment for Currents" page):

| track call | from |
| --- | --- |
| `userId` | `external_user_id` |
| `anonymousId` | `user_id` (the Braze user id), on every event that has one |
| `event` | Braze's name for the event type (`Email Link Clicked`; `EVENT_NAMES`, `event_name`) |
| `messageId` | `id` |
| `timestamp` | `time`, as ISO-8601 UTC (Segment's API takes a date; Braze documents the instant) |
| `context.traits.email` | `email_address` |
| `context.traits.phone` | the event's phone number (`to_phone_number`, `user_phone_number`, ...) |
| `context.device.model` | `device_model` |
| `context.os` | `platform` as an OS name (`ios` -> `iOS`) and `os_version` |
| `properties` | every other field, `app_id` included; an email click's `url` as `link_url`; custom and purchase properties nested as sent; fields the catalogue does not know under `extra` |

Braze leaves out `timezone` and `sending_ip`; so does this mapping. Braze sends no
`integrations` object; `integrations` in destinations.toml adds one (for example
`{ "Braze Cloud Mode (Actions)" = false }`, so events do not echo back into Braze from a
workspace that has Braze as a destination). No `sentAt`: Segment would then shift the
timestamp of a replayed old event by its clock-skew correction.

Docs: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#batch ,
https://segment.com/docs/connections/spec/track/ , https://segment.com/docs/connections/spec/common/#context ,
https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/segment/segment_for_currents/ ,
https://www.braze.com/docs/user_guide/data/distribution/braze_currents/event_glossary/message_engagement_events/
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from currents_relay.catalogue import lookup
from currents_relay.delivery.partner import Partner, Request, basic

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
    "CarrierSend": "Sent to Carrier",
    "InboundReceive": "Inbound Received",
    "ShortLinkClick": "Short Link Clicked",
    "Conversion": "Converted",
    "Entry": "Entered",
    "Outcome": "Outcome",
}
# Braze's own names where the rule above does not give them (its Segment page's event table).
EVENT_NAMES = {
    "users.behaviors.Uninstall": "Application Uninstalled",
    "users.behaviors.subscription.GlobalStateChange": "Subscription State Changed",
    "users.behaviors.subscriptiongroup.StateChange": "Subscription Group State Changed",
    "users.campaigns.EnrollInControl": "Campaign Control Group Entered",
    "users.messages.pushnotification.Open": "Push Notification Tapped",
    "users.messages.pushnotification.IosForeground": "iOS Foreground Push Opened",
    "users.messages.email.Click": "Email Link Clicked",
    "users.behaviors.app.NewsFeedImpression": "News Feed Viewed",
    "users.canvas.exit.MatchedAudience": "Canvas Exited On Audience Match",
    "users.canvas.exit.PerformedEvent": "Canvas Exited On Event",
    "users.canvas.experimentstep.Conversion": "Canvas Experiment Step Converted",
    "users.canvas.experimentstep.SplitEntry": "Canvas Experiment Step Entered",
}
OS_NAMES = {
    "ios": "iOS",
    "android": "Android",
    "kindle": "Fire OS",
    "tvos": "tvOS",
    "roku": "Roku OS",
}
PHONE_FIELDS = ("to_phone_number", "user_phone_number", "phone_number", "from_phone_number")
# Fields Braze puts elsewhere than `properties`, or leaves out.
NOT_PROPERTIES = frozenset(
    (
        "event_type",
        "id",
        "time",
        "timestamp",
        "extra",
        "source_uri",
        "source_offset",
        "ingested_at",
        "user_id",
        "external_user_id",
        "timezone",
        "email_address",
        *PHONE_FIELDS,
        "device_model",
        "sending_ip",
    )
)


def event_name(event_type: str, overrides: Mapping[str, str] | None = None) -> str:
    """Braze's Segment name of an event type: `users.messages.email.Open` -> `Email Opened`."""
    named = (overrides or {}).get(event_type) or EVENT_NAMES.get(event_type)
    if named:
        return named
    parts = event_type.split(".")
    verb = parts[-1]
    channel = parts[-2] if len(parts) >= 2 else ""
    if channel in CHANNELS:
        return f"{CHANNELS[channel]} {VERBS.get(verb, verb)}"
    return " ".join(p[:1].upper() + p[1:] for p in parts[1:] if p) or event_type


def iso_timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def phone_of(row: Mapping[str, Any]) -> str | None:
    """The event's phone number (the first phone field present)."""
    return next((row[name] for name in PHONE_FIELDS if row.get(name)), None)


def context_of(row: Mapping[str, Any]) -> dict[str, Any]:
    traits = {k: v for k, v in (("email", row.get("email_address")), ("phone", phone_of(row))) if v}
    context: dict[str, Any] = (
        {"device": {"model": row["device_model"]}} if row.get("device_model") else {"device": {}}
    )
    context["traits"] = traits
    platform = str(row.get("platform") or "").lower()
    os = {
        k: v for k, v in (("name", OS_NAMES.get(platform)), ("version", row.get("os_version"))) if v
    }
    if os:
        context["os"] = os
    return context


def properties_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event's own fields; Avro's JSON `properties` comes back as the nested object it was."""
    event_type = row.get("event_type") or ""
    properties = {k: v for k, v in row.items() if v is not None and k not in NOT_PROPERTIES}
    if "properties" in properties:
        nested = json.loads(properties.pop("properties"))
        properties[lookup(event_type).http_properties_key or "properties"] = nested
    if event_type == "users.messages.email.Click" and "url" in properties:
        properties["link_url"] = properties.pop("url")
    if row.get("extra"):
        properties["extra"] = json.loads(row["extra"])
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
        self.host_from_extra("region", REGIONS, "us")
        super().validate()
        self.require_password("the source's write key")

    def wire_event(self, row: Mapping[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "track"}
        if row.get("external_user_id"):
            message["userId"] = row["external_user_id"]
        if row.get("user_id"):
            message["anonymousId"] = row["user_id"]
        message["event"] = event_name(row["event_type"], self.options.get("event_names"))
        message["messageId"] = row["id"]
        message["timestamp"] = iso_timestamp(row["time"])
        message["properties"] = properties_of(row)
        message["context"] = context_of(row)
        if self.options.get("integrations"):
            message["integrations"] = dict(self.options["integrations"])
        return message

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        credential = basic(self.endpoint.password or "")
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {credential}"}
        return Request(f"{self.endpoint.url}/v1/batch", headers, body)
