"""Any HTTPS endpoint, as Braze's Custom HTTP connector calls it.

`POST <url>` with `{"events": [...]}` (at most 100 events a request), the header
`Braze-Currents-Version: 1`, and an optional `Authorization: Bearer <token>`. Retry rules are
Braze's contract (see `delivery.partner`).

Docs: https://www.braze.com/docs/user_guide/data/braze_currents/setting_up_currents/custom_http_connector/
"""

from __future__ import annotations

from typing import ClassVar

from currents_relay.delivery.partner import Partner, Request


class CustomHttp(Partner):
    name: ClassVar[str] = "custom_http"
    max_events: ClassVar[int] = 100
    max_bytes: ClassVar[int] = 1_000_000  # undocumented: stay well under common proxy limits
    bearer_required: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        if self.bearer_required:
            self.require_password("the bearer token")

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        headers = {"Content-Type": "application/json", "Braze-Currents-Version": "1"}
        if self.endpoint.password:
            headers["Authorization"] = f"Bearer {self.endpoint.password}"
        return Request(self.endpoint.url, headers, body)
