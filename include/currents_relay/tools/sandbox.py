"""`currents-relay sandbox`: loopback HTTP servers that behave like the partners.

One server per partner on 127.0.0.1, with the partner's paths, auth checks, payload checks,
size limits and status codes. Knobs inject faults: a status (429 with `Retry-After`, 5xx),
slow responses and dropped connections, at a rate or for the next N requests; credentials can
be rejected and single events "poisoned" (400). Each server records every event it accepts
(destination, request id, event id) in memory and, optionally, to a JSON-lines file, so a run
can be reconciled: every selected event arrived, none twice. Given a certificate and its key
(`Sandbox(tls=...)`), the servers speak HTTPS, as the partners do.

A network knob makes a server look an internet away: `latency` (seconds added to every
answer) and `rate_limit` (more than N requests in a second are answered 429 with
`Retry-After`, as a partner's throttle does). Its stats report the most requests it had in
flight at once. Each server is uvicorn on a thread of its own (HTTP/1.1 keep-alive, bodies
by `Content-Length` or chunked, gzip or not, `Expect: 100-continue` answered).

Control, on every server: `GET /__sandbox/stats`, `POST /__sandbox/faults` (JSON: `rate`,
`next`, `statuses`, `retry_after`, `modes`, `delay`), `POST /__sandbox/network` (`latency`,
`rate_limit`), `POST /__sandbox/credentials` (`{"valid": false}`), `POST /__sandbox/poison`
(`{"ids": [...]}`), `POST /__sandbox/reset`.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import uvicorn
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response


class Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Faults:
    rate: float = 0.0  # share of requests that fail
    next: int = 0  # the next N requests fail
    statuses: list[int] = field(default_factory=lambda: [503])
    modes: list[str] = field(default_factory=lambda: ["status"])  # status | reset | slow
    retry_after: float | None = None
    delay: float = 0.0  # seconds, for `slow`


class RateLimit:
    """At most `per_second` requests in any one-second window; beyond: 429 with Retry-After."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """None if admitted, else the seconds until a request would be."""
        while self.times and self.times[0] <= now - 1.0:
            self.times.popleft()
        if len(self.times) < self.per_second:
            self.times.append(now)
            return None
        return max(0.0, self.times[0] + 1.0 - now)


class PartnerSim:
    """How one partner answers: subclasses check path, auth and body."""

    name: ClassVar[str]
    max_bytes: ClassVar[int]
    success: ClassVar[tuple[int, bytes]] = (200, b"OK")
    check_bodies: bool = True  # False: a sink that answers success unread (benchmarks only)

    def __init__(self, secret: str | None = None, record: Path | None = None) -> None:
        self.secret = secret if secret is not None else f"sandbox-{self.name}-key"
        self.record = record
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.statuses: Counter[int] = Counter()
            self.accepted: dict[str, str] = {}  # event id -> request id that carried it
            self.accepted_events = 0
            self.duplicates = 0
            self.discarded = 0
            self.max_body_bytes = 0
            self.gzip_requests = 0
            self.max_request_events = 0
            self.faults = Faults()
            self.credentials_valid = True
            self.disabled = False
            self.poison: set[str] = set()
            self.in_flight = 0
            self.max_in_flight = 0
            self.set_network(0.0, None)

    def set_network(self, latency: float, rate_limit: float | None) -> None:
        """Seconds added to every answer; requests a second before answering 429."""
        self.latency = latency
        self.rate_limit = RateLimit(rate_limit) if rate_limit else None

    # -- to override ---------------------------------------------------------------------------
    def check(self, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> list[str]:
        """Validate a POST; return the accepted event ids or raise Refused."""
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------------
    def key_ok(self, presented: str | None) -> bool:
        return self.credentials_valid and presented == self.secret

    @staticmethod
    def basic_user(headers: Any) -> str | None:
        """The user of an HTTP Basic `Authorization` header (a write key), if any."""
        auth = headers.get("Authorization", "")
        return (
            base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            if auth.startswith("Basic ")
            else None
        )

    @staticmethod
    def events_body(body: bytes) -> list[dict]:
        try:
            data = json.loads(body)
        except ValueError:
            raise Refused(400, "invalid JSON") from None
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise Refused(400, 'expected {"events": [...]}')
        if not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in events):
            raise Refused(400, "every event needs a string id")
        return events

    def check_poison(self, ids: list[str]) -> None:
        if self.poison and any(i in self.poison for i in ids):
            raise Refused(400, "event rejected: invalid payload")

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "destination": self.name,
                "requests": self.requests,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "accepted_events": self.accepted_events,
                "unique_events": len(self.accepted),
                "duplicates": self.duplicates,
                "discarded": self.discarded,
                "max_body_bytes": self.max_body_bytes,
                "max_request_events": self.max_request_events,
                "gzip_requests": self.gzip_requests,
                "max_in_flight": self.max_in_flight,
            }

    def accept(self, request_id: str, ids: list[str], body_bytes: int) -> None:
        with self.lock:
            self.max_body_bytes = max(self.max_body_bytes, body_bytes)
            self.max_request_events = max(self.max_request_events, len(ids))
            for event_id in ids:
                if event_id in self.accepted:
                    self.duplicates += 1
                self.accepted[event_id] = request_id
            self.accepted_events += len(ids)
            if self.record:
                with self.record.open("a") as out:
                    out.writelines(
                        json.dumps(
                            {"destination": self.name, "request_id": request_id, "event_id": i}
                        )
                        + "\n"
                        for i in ids
                    )

    def draw_fault(self) -> str | None:
        with self.lock:
            faults = self.faults
            if faults.next > 0:
                faults.next -= 1
            elif not (faults.rate and random.random() < faults.rate):
                return None
            return random.choice(faults.modes)


class TreasureDataSim(PartnerSim):
    """Postback API: key in `X-TD-Write-Key` (or legacy `?td_write_key=`); 200 `{}` even for a bad key."""

    name = "treasure_data"
    max_bytes = 1_048_064
    success = (200, b"{}")
    PATH = re.compile(r"^/postback/v3/event/([A-Za-z0-9_]+)/([A-Za-z0-9_]+)$")

    def check(self, path, query, headers, body):
        if not self.PATH.match(path):
            raise Refused(404, "not found")
        if len(body) > self.max_bytes:
            raise Refused(413, "request entity too large")
        ids = [e["id"] for e in self.events_body(body)]
        self.check_poison(ids)
        key = headers.get("X-TD-Write-Key") or (query.get("td_write_key") or [None])[0]
        if not self.key_ok(key):
            with self.lock:
                self.discarded += len(
                    ids
                )  # accepted on the wire, dropped later: TD checks keys asynchronously
            return []
        return ids


class RudderStackSim(PartnerSim):
    """Webhook source: `?writeKey=` or Basic with the key as user; 404 when the source is disabled."""

    name = "rudderstack"
    max_bytes = 4_000_000

    def check(self, path, query, headers, body):
        if path != "/v1/webhook":
            raise Refused(404, "not found")
        key = (query.get("writeKey") or [None])[0] or self.basic_user(headers)
        if not self.key_ok(key):
            raise Refused(401, "Invalid write key")
        if self.disabled:
            raise Refused(404, "Source is disabled")
        if len(body) > self.max_bytes:
            raise Refused(413, "Request size too large")
        events = self.events_body(body)
        if not events:
            raise Refused(400, "Empty batch")
        ids = [e["id"] for e in events]
        self.check_poison(ids)
        return ids


class CustomHttpSim(PartnerSim):
    """Braze's Custom HTTP connector contract: Bearer token, `Braze-Currents-Version: 1`."""

    name = "custom_http"
    max_bytes = 1_000_000
    max_events = 100

    def check(self, path, query, headers, body):
        if self.secret and not self.key_ok(
            headers.get("Authorization", "").removeprefix("Bearer ") or None
        ):
            raise Refused(401, "unauthorized")
        if headers.get("Braze-Currents-Version") != "1":
            raise Refused(400, "missing Braze-Currents-Version: 1")
        if len(body) > self.max_bytes:
            raise Refused(413, "payload too large")
        events = self.events_body(body)
        if len(events) > self.max_events:
            raise Refused(413, f"at most {self.max_events} events a request")
        ids = [e["id"] for e in events]
        self.check_poison(ids)
        return ids


class ZeotapSim(CustomHttpSim):
    name = "zeotap"


class SegmentSim(PartnerSim):
    """Tracking API `/v1/batch`: Basic `writeKey:`; 500 KB, 32 KB an event; >2,500 events: 200 but dropped."""

    name = "segment"
    max_bytes = 500_000
    max_event_bytes = 32_000
    max_events = 2_500

    def check(self, path, query, headers, body):
        if path != "/v1/batch":
            raise Refused(404, "not found")
        if not self.key_ok(self.basic_user(headers)):
            raise Refused(401, "Invalid write key")
        if len(body) > self.max_bytes:
            raise Refused(400, "Request too large")
        try:
            batch = json.loads(body)["batch"]
        except (ValueError, KeyError, TypeError):
            raise Refused(400, "Invalid JSON") from None
        for message in batch:
            if len(json.dumps(message)) > self.max_event_bytes:
                raise Refused(400, "Message too large")
            required = (
                message.get("type") == "track" and message.get("event") and message.get("messageId")
            )
            if not required or not (message.get("userId") or message.get("anonymousId")):
                raise Refused(400, "Invalid track call")
        ids = [m["messageId"] for m in batch]
        if len(batch) > self.max_events:  # Segment's quirk: 200 OK, batch silently rejected
            with self.lock:
                self.discarded += len(ids)
            return []
        self.check_poison(ids)
        return ids


class MParticleSim(PartnerSim):
    """Events API `/v2/bulkevents`: Basic key:secret per feed; <=100 batches, 128 KB each, 256 KB; 202."""

    name = "mparticle"
    max_bytes = 256_000
    success = (202, b"")
    EVENT_TYPES = frozenset(
        (
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
    )

    def __init__(self, secret: str | None = None, record: Path | None = None) -> None:
        super().__init__(secret, record)
        self.feeds = {"unbound": ("sandbox-mparticle-key", self.secret)}
        self.by_feed: Counter[str] = Counter()

    def check(self, path, query, headers, body):
        if path not in ("/v2/bulkevents", "/v2/bulkevents/historical"):
            raise Refused(404, "not found")
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            raise Refused(401, "missing credentials")
        pair = tuple(base64.b64decode(auth[6:]).decode().split(":", 1))
        feed = next((f for f, creds in self.feeds.items() if creds == pair), None)
        if feed is None or not self.credentials_valid:
            raise Refused(403, "invalid credentials")
        if len(body) > self.max_bytes:
            raise Refused(413, "request too large")
        try:
            batches = json.loads(body)
        except ValueError:
            raise Refused(400, "invalid JSON") from None
        if not isinstance(batches, list) or len(batches) > 100:
            raise Refused(400, "at most 100 batches a request")
        ids = []
        for batch in batches:
            if len(json.dumps(batch)) > 128_000:
                raise Refused(413, "batch too large")
            if batch.get("environment") not in ("production", "development"):
                raise Refused(400, "environment is required")
            for event in batch.get("events", []):
                data = event.get("data", {})
                attributes = data.get("custom_attributes", {})
                custom = event.get("event_type") == "custom_event"
                valid = (
                    (event.get("event_type") == "uninstall" or custom)
                    and (not custom or data.get("event_name"))
                    and (not custom or data.get("custom_event_type") in self.EVENT_TYPES)
                    and len(attributes) <= 100
                    and all(
                        isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 4096)
                        for v in attributes.values()
                    )
                )
                if not valid:
                    raise Refused(400, "invalid event")
                ids.append(data["source_message_id"])
        self.check_poison(ids)
        with self.lock:
            self.by_feed[feed] += len(ids)
        return ids

    def stats(self) -> dict[str, Any]:
        return super().stats() | {"by_feed": dict(self.by_feed)}


SIMS: dict[str, type[PartnerSim]] = {
    cls.name: cls
    for cls in (TreasureDataSim, RudderStackSim, ZeotapSim, CustomHttpSim, SegmentSim, MParticleSim)
}
FIRST_PORT = 18081
# The ports of `airflow_settings.yaml`'s connections: 18081 (treasure_data) to 18086 (mparticle).
DEFAULT_PORTS = {name: FIRST_PORT + i for i, name in enumerate(SIMS)}


class _App:
    """One partner's server as an ASGI application (served by uvicorn: keep-alive, chunked
    bodies, `Expect: 100-continue`)."""

    def __init__(self, sim: PartnerSim) -> None:
        self.sim = sim

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        headers, path = request.headers, request.url.path
        query = parse_qs(scope["query_string"].decode("latin-1"))
        body = await request.body()
        gzipped = headers.get("Content-Encoding", "").lower() == "gzip"
        if gzipped:
            body = gzip.decompress(body)
        if path.startswith("/__sandbox/"):
            answer = self._control(path, body)
        else:
            sim = self.sim
            with sim.lock:
                sim.in_flight += 1
                sim.max_in_flight = max(sim.max_in_flight, sim.in_flight)
            try:
                answer = await self._answer(scope["method"], path, query, headers, body, gzipped)
            finally:
                with sim.lock:
                    sim.in_flight -= 1
            if answer is None:  # a dropped connection: no answer at all
                send.__self__.transport.abort()  # uvicorn's request cycle
                return
        status, text, extra = answer
        await Response(text, status, extra, media_type="text/plain")(scope, receive, send)

    def _control(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        sim, data = self.sim, json.loads(body or b"{}")
        if path == "/__sandbox/stats":
            return 200, json.dumps(sim.stats()).encode(), {}
        if path == "/__sandbox/faults":
            sim.faults = Faults(**data)
        elif path == "/__sandbox/credentials":
            sim.credentials_valid = bool(data.get("valid", True))
        elif path == "/__sandbox/disabled":
            sim.disabled = bool(data.get("disabled", True))
        elif path == "/__sandbox/poison":
            sim.poison = set(data.get("ids", []))
        elif path == "/__sandbox/network":
            sim.set_network(float(data.get("latency", 0.0)), data.get("rate_limit"))
        elif path == "/__sandbox/reset":
            sim.reset()
        else:
            return 404, b"unknown control", {}
        return 200, b"ok", {}

    async def _answer(
        self, method: str, path: str, query: dict, headers: Headers, body: bytes, gzipped: bool
    ) -> tuple[int, bytes, dict[str, str]] | None:
        sim = self.sim
        with sim.lock:
            sim.requests += 1
            sim.gzip_requests += gzipped
            request_id = f"{sim.name}-{sim.requests}"
            wait = sim.rate_limit.admit(time.monotonic()) if sim.rate_limit else None
        if sim.latency:
            await asyncio.sleep(sim.latency)
        if wait is not None:
            with sim.lock:
                sim.statuses[429] += 1
            return 429, b"rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))}
        if not sim.check_bodies:  # sink mode: read whole, then left unread (benchmarks)
            return *sim.success, {}
        fault = sim.draw_fault()
        if fault == "reset":
            return None
        if fault == "slow":
            await asyncio.sleep(sim.faults.delay)
        elif fault == "status":
            status = random.choice(sim.faults.statuses)
            with sim.lock:
                sim.statuses[status] += 1
            retry_after = sim.faults.retry_after
            return (
                status,
                b"injected fault",
                ({"Retry-After": str(retry_after)} if retry_after is not None else {}),
            )
        try:
            if method != "POST":
                raise Refused(404, "not found")
            ids = sim.check(path, query, headers, body)
        except Refused as refused:
            with sim.lock:
                sim.statuses[refused.status] += 1
            return refused.status, refused.text.encode(), {}
        sim.accept(request_id, ids, len(body))
        status, text = sim.success
        with sim.lock:
            sim.statuses[status] += 1
        return status, text, {}


class _Server(threading.Thread):
    """uvicorn serving one partner on its own thread and event loop."""

    def __init__(self, sim: PartnerSim, port: int, tls: tuple[Path, Path] | None) -> None:
        super().__init__(name=f"sandbox-{sim.name}", daemon=True)
        certificate, key = tls or (None, None)
        config = uvicorn.Config(
            _App(sim),
            log_level="critical",  # quiet: no URLs with keys in logs
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=75,  # a push keeps its connections between batches
            ssl_certfile=certificate,
            ssl_keyfile=key,
        )
        self.server = uvicorn.Server(config)
        self.socket = socket.create_server(("127.0.0.1", port), backlog=128)
        self.port = self.socket.getsockname()[1]

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> None:
        super().start()
        while not self.server.started and self.is_alive():
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.join()
        self.socket.close()


class Sandbox:
    """All partner servers; `start()` returns their base URLs by destination name."""

    def __init__(
        self,
        names: list[str] | None = None,
        ports: dict[str, int] | None = None,
        record: Path | None = None,
        secrets: dict[str, str] | None = None,
        check_bodies: bool = True,
        tls: tuple[Path, Path] | None = None,
        latency: float = 0.0,
        rate_limit: float | None = None,
    ) -> None:
        names = names or list(SIMS)
        self.tls = tls  # (certificate, key): serve HTTPS, as the partners do
        self.sims = {name: SIMS[name]((secrets or {}).get(name), record) for name in names}
        for sim in self.sims.values():
            sim.check_bodies = check_bodies
            sim.set_network(latency, rate_limit)
        self.ports = ports or dict.fromkeys(names, 0)
        self.servers: dict[str, _Server] = {}

    def start(self) -> dict[str, str]:
        for name, sim in self.sims.items():
            self.servers[name] = _Server(sim, self.ports.get(name, 0), self.tls)
            self.servers[name].start()
        return self.urls()

    def urls(self) -> dict[str, str]:
        scheme = "https" if self.tls else "http"
        return {name: f"{scheme}://127.0.0.1:{s.port}" for name, s in self.servers.items()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(options: Any) -> None:
    """Run every partner server until interrupted: the `sandbox` CLI command, given its
    arguments (`base_port`, `record`, `fail_rate`, `statuses`, `retry_after`, `latency`,
    `rate_limit`). Prints one JSON object, each server's URL and key by destination, once
    they listen."""
    ports = {name: (options.base_port or FIRST_PORT) + i for i, name in enumerate(SIMS)}
    record = Path(options.record) if options.record else None
    sandbox = Sandbox(
        ports=ports, record=record, latency=options.latency, rate_limit=options.rate_limit
    )
    statuses = [int(status) for status in options.statuses.split(",")]
    for sim in sandbox.sims.values():
        sim.faults = Faults(options.fail_rate, statuses=statuses, retry_after=options.retry_after)
    urls = sandbox.start()
    servers = {name: {"url": url, "key": sandbox.sims[name].secret} for name, url in urls.items()}
    print(json.dumps(servers), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()
