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
flight at once. The servers are the standard library's `ThreadingHTTPServer` (a thread per
connection, HTTP/1.1 keep-alive): bodies by `Content-Length` or chunked, gzip or not,
`Expect: 100-continue` answered.

Control, on every server: `GET /__sandbox/stats`, `POST /__sandbox/faults` (JSON: `rate`,
`next`, `statuses`, `retry_after`, `modes`, `delay`), `POST /__sandbox/network` (`latency`,
`rate_limit`), `POST /__sandbox/credentials` (`{"valid": false}`), `POST /__sandbox/poison`
(`{"ids": [...]}`), `POST /__sandbox/reset`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import random
import re
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORTS = {
    "treasure_data": 18081,
    "rudderstack": 18082,
    "zeotap": 18083,
    "custom_http": 18084,
    "segment": 18085,
    "mparticle": 18086,
}


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
        self.faults = Faults()
        self.credentials_valid = True
        self.disabled = False
        self.poison: set[str] = set()
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
            self.poison = set()
            self.in_flight = 0
            self.max_in_flight = 0
            self.set_network(0.0, None)

    def set_network(self, latency: float, rate_limit: float | None) -> None:
        """Seconds added to every answer; requests a second before answering 429."""
        self.latency = latency
        self.rate_limit = RateLimit(rate_limit) if rate_limit else None

    # -- to override ---------------------------------------------------------------------------
    def check(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> list[str]:
        """Validate a request; return the accepted event ids or raise Refused."""
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------------
    def key_ok(self, presented: str | None) -> bool:
        return self.credentials_valid and presented == self.secret

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

    def check(self, method, path, query, headers, body):
        if method != "POST" or not self.PATH.match(path):
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

    def check(self, method, path, query, headers, body):
        if method != "POST" or path != "/v1/webhook":
            raise Refused(404, "not found")
        key = (query.get("writeKey") or [None])[0]
        auth = headers.get("Authorization", "")
        if not key and auth.startswith("Basic "):
            key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
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

    def check(self, method, path, query, headers, body):
        if method != "POST":
            raise Refused(404, "not found")
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

    def check(self, method, path, query, headers, body):
        if method != "POST" or path != "/v1/batch":
            raise Refused(404, "not found")
        auth = headers.get("Authorization", "")
        key = (
            base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            if auth.startswith("Basic ")
            else None
        )
        if not self.key_ok(key):
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

    def check(self, method, path, query, headers, body):
        if method != "POST" or path not in ("/v2/bulkevents", "/v2/bulkevents/historical"):
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


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """A request's body as a server reads it: by `Content-Length` or chunked transfer coding,
    then gzip-decoded when `Content-Encoding: gzip` says so."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()  # the CRLF after each chunk
        body = b"".join(parts)
    else:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
    if handler.headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return body


def _handler(sim: PartnerSim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the partners' servers

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no URLs with keys in logs
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/plain")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _control(self, path: str, body: bytes) -> None:
            data = json.loads(body or b"{}")
            if path == "/__sandbox/stats":
                self._reply(200, json.dumps(sim.stats()).encode())
                return
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
                self._reply(404, b"unknown control")
                return
            self._reply(200, b"ok")

        def _handle(self) -> None:
            url = urlsplit(self.path)
            if url.path.startswith("/__sandbox/"):
                self._control(url.path, read_body(self))
                return
            with sim.lock:
                sim.in_flight += 1
                sim.max_in_flight = max(sim.max_in_flight, sim.in_flight)
            try:
                self._answer(url)
            finally:
                with sim.lock:
                    sim.in_flight -= 1

        def _answer(self, url: Any) -> None:
            gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
            body = read_body(self)
            with sim.lock:
                sim.requests += 1
                sim.gzip_requests += gzipped
                request_id = f"{sim.name}-{sim.requests}"
                wait = sim.rate_limit.admit(time.monotonic()) if sim.rate_limit else None
            if sim.latency:
                time.sleep(sim.latency)
            if wait is not None:
                with sim.lock:
                    sim.statuses[429] += 1
                retry_after = str(max(1, math.ceil(wait)))
                self._reply(429, b"rate limit exceeded", {"Retry-After": retry_after})
                return
            if not sim.check_bodies:  # sink mode: read whole, then left unread (benchmarks)
                status, text = sim.success
                self._reply(status, text)
                return
            fault = sim.draw_fault()
            if fault == "reset":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "slow":
                time.sleep(sim.faults.delay)
            elif fault == "status":
                status = random.choice(sim.faults.statuses)
                with sim.lock:
                    sim.statuses[status] += 1
                headers = (
                    {"Retry-After": str(sim.faults.retry_after)}
                    if sim.faults.retry_after is not None
                    else {}
                )
                self._reply(status, b"injected fault", headers)
                return
            try:
                ids = sim.check(self.command, url.path, parse_qs(url.query), self.headers, body)
            except Refused as refused:
                with sim.lock:
                    sim.statuses[refused.status] += 1
                self._reply(refused.status, refused.text.encode())
                return
            sim.accept(request_id, ids, len(body))
            status, text = sim.success
            with sim.lock:
                sim.statuses[status] += 1
            self._reply(status, text)

        do_POST = _handle
        do_GET = _handle

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a push opens its connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that leaves mid-request (a killed push, a reset) is not an error here."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            super().handle_error(request, client_address)


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
        self.threads: list[threading.Thread] = []

    def start(self) -> dict[str, str]:
        for name, sim in self.sims.items():
            server = _Server(("127.0.0.1", self.ports.get(name, 0)), _handler(sim))
            if self.tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self.tls)
                server.socket = context.wrap_socket(server.socket, server_side=True)
            self.servers[name] = server
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sandbox-{name}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        return self.urls()

    def urls(self) -> dict[str, str]:
        scheme = "https" if self.tls else "http"
        return {
            name: f"{scheme}://127.0.0.1:{server.server_address[1]}"
            for name, server in self.servers.items()
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        self.servers.clear()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    base_port: int | None,
    record: Path | None,
    fail_rate: float,
    statuses: list[int],
    retry_after: float | None,
    latency: float = 0.0,
    rate_limit: float | None = None,
) -> None:
    """Run every partner server until interrupted (the `sandbox` CLI command); prints one
    JSON object, each server's URL and key by destination, once they listen."""
    ports = {
        name: (base_port + i if base_port else DEFAULT_PORTS[name]) for i, name in enumerate(SIMS)
    }
    sandbox = Sandbox(ports=ports, record=record, latency=latency, rate_limit=rate_limit)
    for sim in sandbox.sims.values():
        sim.faults = Faults(rate=fail_rate, statuses=statuses, retry_after=retry_after)
    urls = sandbox.start()
    servers = {name: {"url": url, "key": sandbox.sims[name].secret} for name, url in urls.items()}
    print(json.dumps(servers), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()
