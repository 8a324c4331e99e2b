"""RudderStack, through the webhook URL of its Braze source.

`POST <data plane URL>/v1/webhook` with Braze's body `{"events": [...]}`: the Braze source
turns each Currents event into a RudderStack event. The write key goes as the HTTP Basic user
(RudderStack accepts it there as well as in `?writeKey=`), so it never sits in a URL that a
proxy or a debug log could print; set `extra.key_in_url: true` to use the webhook URL exactly
as RudderStack shows it (every URL we print is redacted either way). About 4 MB per body (413 beyond); 401 bad key, 404
disabled source, 400 bad JSON or empty batch, 429 throttled; success is 200 `OK`.

Docs: https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/rudderstack/rudderstack_for_currents/
and https://www.rudderstack.com/docs/sources/event-streams/cloud-apps/braze/
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from currents_relay.delivery.partner import Partner, Request, basic


class RudderStack(Partner):
    name: ClassVar[str] = "rudderstack"
    max_events: ClassVar[int] = 5_000
    max_bytes: ClassVar[int] = 3_900_000  # documented ~4 MB; keep a margin for headers
    max_in_flight: ClassVar[int] = 4  # 4 MB bodies: 4 in flight 100 ms away carry ~150 MB/s

    def validate(self) -> None:
        super().validate()
        self.require_password("the source's write key")

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        key = self.endpoint.password or ""
        if self.endpoint.extra.get("key_in_url"):
            url = f"{self.endpoint.url}/v1/webhook?writeKey={quote(key, safe='')}"
            return Request(url, {"Content-Type": "application/json"}, body)
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic(key)}"}
        return Request(f"{self.endpoint.url}/v1/webhook", headers, body)
