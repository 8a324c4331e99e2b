"""The one small interface every destination implements.

A partner module says which events it takes, how canonical rows become its wire events and
requests, its limits (events and bytes per request), and how its responses are classified.
Selection, batching, retries, the ledger, dead letters and counting live once, in `engine`.

The default classification is Braze's Custom HTTP connector contract, which Braze applies to
every partner: 2xx done; 413 split the batch; 400 split down to single events and dead-letter
the ones still refused; 401/403/404 stop and wait for fixed configuration; 429, 5xx and
anything else retried with backoff.
(https://www.braze.com/docs/user_guide/data/braze_currents/setting_up_currents/custom_http_connector/)
"""

from __future__ import annotations

import base64
import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

from currents_relay.delivery.batching import Batch
from currents_relay.ingest.normalize import to_http

SECRET_QUERY_WORDS = ("key", "token", "secret", "password", "signature", "sig", "auth")


def basic(user: str, password: str = "") -> str:
    """An HTTP Basic credential, `base64("<user>:<password>")`."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"  # 429, 5xx, unknown: back off and send again
    SPLIT = "split"  # 413: halve the batch
    REJECT = "reject"  # 400: split down to single events, dead-letter those still refused
    STOP = "stop"  # 401/403/404: configuration is broken; keep everything pending


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a partner: built from the Airflow Connection `currents_<name>`."""

    url: str  # scheme://host[:port][/path]
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, conn: Any) -> Endpoint:
        """From an Airflow Connection (`host` may hold a full URL, else schema/host/port)."""
        host = (conn.host or "").rstrip("/")
        if "://" not in host:
            port = f":{conn.port}" if conn.port else ""
            host = f"{conn.schema or 'https'}://{host}{port}"
        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else dict(conn.extra or {})
        return cls(url=host, login=conn.login or None, password=conn.password or None, extra=extra)


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes
    units: int = 1  # what the partner's rate limit counts in this request, beyond requests


@dataclass(frozen=True)
class Concurrency:
    """How hard one push task may drive a destination."""

    max_in_flight: int
    requests_per_second: float | None
    units_per_second: float | None


class ConfigurationError(ValueError):
    """A destination's connection is missing something it needs."""


class Partner:
    """Base class of a destination; subclasses set the class constants and `request`."""

    name: ClassVar[str]
    max_events: ClassVar[int]  # per request
    max_bytes: ClassVar[int]  # per request body
    max_event_bytes: ClassVar[int | None] = None  # an event larger than this is dead-lettered
    default_event_types: ClassVar[tuple[str, ...] | None] = None  # None: every event type
    acknowledgement: ClassVar[str] = "synchronous"
    # Whether a 2xx means the partner took the events (False: it only accepted them, and
    # checks later; the ledger records such acknowledgements as "accepted").
    confirms: ClassVar[bool] = True
    docs: ClassVar[str] = ""
    # Concurrency defaults, overridable in the destination's configuration. A rate is the
    # partner's documented limit for all our senders together (None: none documented);
    # each push task takes its share (divided by `pool_slots`, the destination pool's slots).
    max_in_flight: ClassVar[int] = 16
    requests_per_second: ClassVar[float | None] = None
    units_per_second: ClassVar[float | None] = None  # e.g. mParticle's event batches a second

    event_overhead: ClassVar[int] = 0  # bytes the body adds around each event (beyond a comma)

    def __init__(self, endpoint: Endpoint, options: Mapping[str, Any] | None = None) -> None:
        self.endpoint = endpoint
        self.options = dict(options or {})
        self.adjustments: Counter[str] = Counter()  # values the partner's limits made us change
        self.validate()

    # -- what subclasses may override ---------------------------------------------------------
    def validate(self) -> None:
        """Refuse a connection that cannot work, with a message that names what is missing."""
        if not self.endpoint.url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{self.name}: the connection needs an http(s) URL")

    def require_password(self, what: str) -> None:
        if not self.endpoint.password:
            raise ConfigurationError(f"{self.name}: the connection needs {what} as its password")

    def host_from_extra(self, name: str, hosts: Mapping[str, str], default: str) -> None:
        """Where the connection names no host: the one `extra.<name>` picks from `hosts`."""
        if self.endpoint.url.rstrip("/") not in ("", "https:", "http:"):
            return
        chosen = str(self.endpoint.extra.get(name, default)).lower()
        if chosen not in hosts:
            raise ConfigurationError(f"{self.name}: extra.{name} must be one of {sorted(hosts)}")
        self.endpoint = replace(self.endpoint, url=hosts[chosen])

    def wire_event(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A canonical row in the partner's event shape (default: Braze's HTTP event)."""
        return to_http(row)

    def route(self, row: Mapping[str, Any]) -> str:
        """Which credentials/endpoint an event needs; one request never mixes routes."""
        return ""

    # A body that is the events joined with commas between these two (None: `body` regroups
    # them, and is given each event).
    envelope: ClassVar[tuple[bytes, bytes] | None] = (b'{"events":[', b"]}")

    def body(self, events: list[bytes], batch_id: str = "") -> bytes:
        """The request body holding already-encoded events (default: inside `envelope`)."""
        assert self.envelope, f"{self.name}: a partner without an envelope writes its body"
        head, tail = self.envelope
        return head + b",".join(events) + tail

    def batch_body(self, batch: Batch, batch_id: str) -> bytes:
        """`body` of a batch: its events inside the envelope, or `body` of each event where
        the partner regroups them."""
        if self.envelope and type(self).body is Partner.body:
            return batch.body(*self.envelope)
        return self.body(batch.encoded(), batch_id)

    def request(self, body: bytes, batch_id: str, route: str = "") -> Request:
        raise NotImplementedError

    def classify(self, status: int) -> Outcome:
        if 200 <= status < 300:
            return Outcome.DONE
        if status == 413:
            return Outcome.SPLIT
        if status == 400:
            return Outcome.REJECT
        if status in (401, 403, 404):
            return Outcome.STOP
        return Outcome.RETRY

    # -- shared helpers ------------------------------------------------------------------------
    def concurrency(self) -> Concurrency:
        """This push task's share of the partner's limits: `max_in_flight`,
        `requests_per_second`, `units_per_second` from the connection's extra (an account's
        own limits, e.g. one the partner raised), else the destination's options, else the
        partner's defaults; the rates divided by `pool_slots` (push tasks of this
        destination that may run at once)."""
        options = self.options
        slots = max(1, int(options.get("pool_slots", 1)))

        def setting(name: str, default: Any) -> Any:
            return self.endpoint.extra.get(name, options.get(name, default))

        def share(name: str, default: float | None) -> float | None:
            value = setting(name, default)
            return float(value) / slots if value else None

        return Concurrency(
            max_in_flight=max(1, int(setting("max_in_flight", self.max_in_flight))),
            requests_per_second=share("requests_per_second", self.requests_per_second),
            units_per_second=share("units_per_second", self.units_per_second),
        )

    def secrets(self) -> list[str]:
        """Every secret value and derived secret (for masking and redaction): the password
        (also URL-quoted), Basic credentials of it (as the user, or with the login), and a
        password or key-like query values in the URL."""
        password = self.endpoint.password
        values = [password, quote(password, safe=""), basic(password)] if password else []
        if self.endpoint.login and password:
            values.append(basic(self.endpoint.login, password))
        url = urlsplit(self.endpoint.url)
        values.append(url.password or "")
        for key, value in parse_qsl(url.query):
            if any(word in key.lower() for word in SECRET_QUERY_WORDS):
                values.append(value)
        return [v for v in values if v]

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by `***` (URLs, error messages, responses)."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    @property
    def overhead(self) -> int:
        return len(self.body([]))
