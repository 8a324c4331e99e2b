"""RudderStack, through the webhook URL of its Braze source.

`POST <data plane URL>/v1/webhook?writeKey=<key>` with Braze's body `{"events": [...]}`:
the Braze source turns each Currents event into a RudderStack event. The write key sits in the
URL, so every URL we print is redacted. About 4 MB per body (413 beyond); 401 bad key, 404
disabled source, 400 bad JSON or empty batch, 429 throttled; success is 200 `OK`.

Docs: https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/rudderstack/rudderstack_for_currents/
and https://www.rudderstack.com/docs/sources/event-streams/cloud-apps/braze/
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from currents_relay.delivery.partner import ConfigurationError, Partner, Request


class RudderStack(Partner):
    name: ClassVar[str] = "rudderstack"
    max_events: ClassVar[int] = 5_000
    max_bytes: ClassVar[int] = 3_900_000  # documented ~4 MB; keep a margin for headers

    def validate(self) -> None:
        super().validate()
        if not self.endpoint.password:
            raise ConfigurationError(
                "rudderstack: the connection needs the source's write key as its password"
            )

    def secrets(self) -> list[str]:
        key = self.endpoint.password or ""
        return [*super().secrets(), quote(key, safe="")] if key else super().secrets()

    def request(self, body: bytes, batch_id: str) -> Request:
        url = f"{self.endpoint.url}/v1/webhook?writeKey={quote(self.endpoint.password or '', safe='')}"
        return Request(url, {"Content-Type": "application/json"}, body)
