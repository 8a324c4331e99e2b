"""A lean HTTP/1.1 client for the push: POST on one keep-alive connection per host.

urllib3, on top of `http.client`, spends ~200 us of Python on each request (headers parsed
by the `email` package, response and pool objects): with 1 MB bodies on loopback that was
half of the sending thread's CPU (~390-445 us a request, against ~140-220 us here), and the
sending thread feeds the socket. The push needs little of HTTP: a POST with a known length,
an answer's status, a few headers and a short body. This does that, and nothing more:

- plain TCP or TLS (the system's `ssl`, certifi's authorities by default, hostname checked);
- the body sent as the buffers it is made of, never joined;
- answers with `Content-Length`, chunked, or read to the end of the connection; interim
  1xx answers skipped; a connection kept unless the answer or an error says otherwise;
- a kept connection the server has closed meanwhile is noticed before it is reused;
- an answer the server sent before reading the whole body (a 413), then closed, is read;
- every failure on the way (refused, reset, timed out, TLS, a garbled answer) raised as
  `TransportError`, which the push retries like a 5xx; the connection is dropped.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import certifi

MAX_LINE = 65_536  # bytes in a status or header line
MAX_HEADERS = 100
MAX_BODY = 16 << 20  # bytes of an answer's body (partners answer with a few bytes of JSON)
FORBIDDEN = frozenset("\r\n\0")  # in a header: would split the request
# Sent unless the caller sets them: a name (some gateways refuse requests without one), and
# answers unencoded (the push reads an answer's text for dead letters and logs).
DEFAULT_HEADERS = {"User-Agent": "currents-relay", "Accept-Encoding": "identity"}


class TransportError(OSError):
    """The request or its answer was lost on the way; whether the partner got it is unknown."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind  # what the push counts the failure as (e.g. `SSLError`)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    data: bytes


@dataclass(frozen=True)
class _Target:
    tls: bool
    host: str
    port: int
    path: str  # with the query
    authority: str  # the Host header


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb", buffering=MAX_LINE)

    def dropped(self) -> bool:
        """Whether the server closed the idle connection (or sent something unasked)."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Client:
    """POSTs to any number of hosts, one connection each, kept between requests."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.ca_file = ca_file
        self._targets: dict[str, _Target] = {}
        self._connections: dict[tuple[bool, str, int], _Connection] = {}

    def post(
        self, url: str, headers: Mapping[str, str], body: bytes | Iterable[bytes | memoryview]
    ) -> Response:
        """POST `body` (bytes, or buffers sent one after the other) to `url`."""
        target = self._target(url)
        buffers = [body] if isinstance(body, bytes | bytearray | memoryview) else list(body)
        head = _head(target, headers, sum(memoryview(b).nbytes for b in buffers))
        key = (target.tls, target.host, target.port)
        connection = self._connections.pop(key, None)
        if connection is not None and connection.dropped():
            connection.close()
            connection = None
        if connection is None:
            connection = self._connect(target)
        cut: OSError | None = None
        try:
            try:
                connection.sock.sendall(head)
                for buffer in buffers:
                    connection.sock.sendall(buffer)
            except (BrokenPipeError, ConnectionResetError) as error:
                # The server may have answered before reading the whole body (a 413 at the
                # door) and closed: that answer is read below; where there is none, the
                # failure is this one.
                cut = error
            response, keep = _read_response(connection.reader)
        except BaseException as error:
            connection.close()
            if cut is not None and isinstance(error, OSError | ValueError):
                error = cut  # no answer after all: the send's failure is the one to report
            raise _transport_error(error) from None
        if keep and cut is None:
            self._connections[key] = connection
        else:
            connection.close()
        return response

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext:
        """Made at the first https connection: loading the authorities takes ~17 ms, which a
        client of http:// URLs only (the sandbox, a proxy on the host) never pays."""
        return ssl.create_default_context(cafile=self.ca_file or certifi.where())

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("only http:// and https:// URLs with a host can be posted to")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            host = parts.hostname
            shown = f"[{host}]" if ":" in host else host
            authority = shown if port == (443 if tls else 80) else f"{shown}:{port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = self._targets[url] = _Target(tls, host, port, path, authority)
        return target

    def _connect(self, target: _Target) -> _Connection:
        try:
            sock = socket.create_connection((target.host, target.port), self.connect_timeout)
        except OSError as error:
            raise TransportError("ConnectError", f"{type(error).__name__}: {error}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls:
                sock = self._tls.wrap_socket(sock, server_hostname=target.host)
            sock.settimeout(self.read_timeout)
        except BaseException as error:
            sock.close()
            raise _transport_error(error) from None
        return _Connection(sock)


def _transport_error(error: BaseException) -> BaseException:
    """`error` as the push counts it (anything but a failure on the way is left as it is)."""
    if isinstance(error, TransportError):
        return error
    if isinstance(error, ssl.SSLError):
        return TransportError("SSLError", str(error))
    if isinstance(error, TimeoutError):
        return TransportError("ReadTimeout", "no answer in time")
    if isinstance(error, OSError):
        return TransportError(type(error).__name__, str(error))
    if isinstance(error, ValueError):
        return TransportError("BadResponse", str(error))
    return error


def _head(target: _Target, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.authority}"]
    given = {name.lower() for name in headers}
    defaults = {k: v for k, v in DEFAULT_HEADERS.items() if k.lower() not in given}
    for name, value in (defaults | dict(headers)).items():
        if name.lower() in ("host", "content-length", "transfer-encoding"):
            continue  # ours
        if FORBIDDEN & set(name + value):
            raise ValueError(f"header {name!r}: a line break or NUL in a header")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ValueError("a line of the answer is too long")
    return line


def _read_response(reader: BinaryIO) -> tuple[Response, bool]:
    """The answer to one request, and whether the connection can be used again."""
    while True:
        status_line = _line(reader)
        if not status_line:
            raise TransportError("RemoteDisconnected", "closed without an answer")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(code)
        headers = read_headers(reader)
        if status >= 200 or status == 101:
            break  # 100 Continue and other interim answers: the real one follows
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if status in (101, 204, 304):
        return Response(status, headers, b""), keep and status != 101
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, _chunked(reader)), keep
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError(f"an answer of {length} bytes")
        data = reader.read(length)
        if len(data) != length:
            raise TransportError("IncompleteRead", f"{len(data)} of {length} bytes")
        return Response(status, headers, data), keep
    data = reader.read(MAX_BODY + 1)  # to the end of the connection
    if len(data) > MAX_BODY:
        raise ValueError(f"an answer of more than {MAX_BODY} bytes")
    return Response(status, headers, data), False


def read_headers(reader: BinaryIO) -> dict[str, str]:
    """Header lines up to the blank one, by lower-cased name (a message's, after its first line)."""
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise TransportError("RemoteDisconnected", "closed in the answer's headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    raise ValueError(f"more than {MAX_HEADERS} headers in the answer")


def _chunked(reader: BinaryIO) -> bytes:
    parts, held = [], 0
    while True:
        size = int(_line(reader).split(b";", 1)[0].strip() or b"x", 16)
        held += size
        if held > MAX_BODY:
            raise ValueError(f"an answer of more than {MAX_BODY} bytes")
        if size == 0:
            read_headers(reader)  # trailers, if any, then the blank line
            return b"".join(parts)
        part = reader.read(size)
        if len(part) != size or reader.read(2) != b"\r\n":
            raise TransportError("IncompleteRead", "a chunk cut short")
        parts.append(part)
