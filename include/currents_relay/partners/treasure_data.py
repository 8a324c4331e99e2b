"""Treasure Data, through the Postback API.

`POST {host}/postback/v3/event/{database}/{table}` with the write key in the
`X-TD-Write-Key` header (never `?td_write_key=`: a key in a URL ends up in logs). Hosts: the
legacy `https://in.treasuredata.com`, or v2 `https://{us01,eu01,ap01,ap02,ap03}.records.in.treasuredata.com`.
Database and table names hold letters, digits and `_`. A v2 body is at most 1,048,064 bytes
(413 beyond). One request becomes one TD row holding the batch, as Braze sends it: "all events
sent in one data batch are inside of one field of one row in a JSON array".
The API answers 200 `{}` even for an invalid key (it checks keys asynchronously), so a 2xx
means "accepted for processing", not "stored": the report says so. We never send
`td_record_time` (TD ignores rows outside -7d..+3d of now, which would lose replayed events).

The connection takes the Postback URL as Braze's setup page shows it,
`https://in.treasuredata.com/postback/v3/event/<database>/<table>?td_write_key=<key>`, as its
host (the key moves to the header; put it in the password instead to keep it out of the
host field), or the host alone with `extra.database`, `extra.table` and the key as password.

Docs: https://api-docs.treasuredata.com/en/api/postback-api/ and
https://www.braze.com/docs/partners/data_and_infrastructure_agility/customer_data_platform/treasure_data/treasure_data_for_currents/
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from currents_relay.delivery.partner import ConfigurationError, Partner, Request

NAME = re.compile(r"^[A-Za-z0-9_]+$")
POSTBACK_PATH = re.compile(r"^/postback/v3/event/(?P<database>[^/]+)/(?P<table>[^/]+)/?$")


class TreasureData(Partner):
    name: ClassVar[str] = "treasure_data"
    max_events: ClassVar[int] = 10_000  # undocumented; the byte limit binds first
    max_bytes: ClassVar[int] = 1_048_064
    max_in_flight: ClassVar[int] = 8  # 1 MB bodies: 8 in flight 100 ms away carry ~80 MB/s
    acknowledgement: ClassVar[str] = (
        "asynchronous: Treasure Data answers 200 before checking the write key"
    )
    confirms: ClassVar[bool] = False

    def validate(self) -> None:
        self._split_postback_url()
        super().validate()
        self.require_password("the write key")
        for part in ("database", "table"):
            value = str(self.endpoint.extra.get(part, ""))
            if not NAME.match(value):
                raise ConfigurationError(
                    f"treasure_data: extra.{part} must be letters, digits or _ (got {value!r})"
                )

    def _split_postback_url(self) -> None:
        """Take database, table and write key out of a whole Postback URL."""
        url = urlsplit(self.endpoint.url)
        found = POSTBACK_PATH.match(url.path)
        if not found and not url.query:
            return
        extra = dict(self.endpoint.extra)
        if found:
            extra |= {"database": found["database"], "table": found["table"]}
        key = parse_qs(url.query).get("td_write_key", [None])[0]
        self.endpoint = replace(
            self.endpoint,
            url=urlunsplit((url.scheme, url.netloc, "", "", "")),
            password=self.endpoint.password or key,
            extra=extra,
        )

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        extra = self.endpoint.extra
        url = f"{self.endpoint.url}/postback/v3/event/{extra['database']}/{extra['table']}"
        headers = {
            "Content-Type": "application/json",
            "X-TD-Write-Key": self.endpoint.password or "",
        }
        return Request(url, headers, body)
