"""The push's HTTP client against a loopback server that answers with scripted bytes."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import pytest

from currents_relay.delivery.http_client import Client, TransportError


@dataclass
class Scripted:
    """Answers each request with the next of `answers` (raw bytes), then closes the
    connection where the answer is followed by `None`; records what it was sent."""

    answers: list[bytes | None]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    connections: int = 0
    closed: threading.Event = field(default_factory=threading.Event)  # a connection was closed

    def serve(self, listener: socket.socket) -> None:
        while self.answers:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection, connection.makefile("rb") as reader:
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = next(
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    self.requests.append((head, reader.read(length)))
                    connection.sendall(self.answers.pop(0) or b"")
                    if self.answers and self.answers[0] is None:
                        self.answers.pop(0)
                        break  # close this connection
            self.closed.set()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def serve():
    """`serve(*answers)` -> (server, url): a scripted server on a loopback port."""
    listeners = []

    def make(*answers: bytes | None) -> tuple[Scripted, str]:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        server = Scripted(list(answers))
        threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
        return server, f"http://127.0.0.1:{listener.getsockname()[1]}/v1/in?k=1"

    yield make
    for listener in listeners:
        listener.close()


def test_a_body_of_buffers_arrives_whole_with_its_length_and_the_connection_is_kept(serve):
    server, url = serve(OK, OK)
    client = Client(read_timeout=5)
    pieces = [b'{"events":[', memoryview(b"1,2,3"), b"]}"]
    first = client.post(url, {"Content-Type": "application/json", "Content-Length": "9"}, pieces)
    second = client.post(url, {"X-Key": "k", "user-agent": "theirs"}, b"x" * 300_000)
    assert (first.status, first.data, second.status) == (200, b"{}", 200)
    (head, body), (second_head, big) = server.requests
    assert body == b'{"events":[1,2,3]}' and big == b"x" * 300_000
    assert head.startswith(b"POST /v1/in?k=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert head.count(b"Content-Length") == 1 and b"Content-Length: 18\r\n" in head  # ours
    assert b"User-Agent: currents-relay\r\n" in head and b"Accept-Encoding: identity\r\n" in head
    assert b"user-agent: theirs\r\n" in second_head and b"currents-relay" not in second_head
    assert server.connections == 1
    client.close()


@pytest.mark.parametrize(
    ("answer", "data"),
    [
        (
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nbad \r\n3\r\nkey\r\n0\r\n\r\n",
            b"bad key",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Slow\r\nRetry-After: 7\r\nContent-Length: 1\r\n\r\n!",
            b"!",
        ),
        (b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", b""),
    ],
)
def test_answers_are_read_whatever_their_framing(serve, answer, data):
    server, url = serve(answer, OK)
    client = Client(read_timeout=5)
    response = client.post(url, {}, b"{}")
    assert response.data == data and response.status in (400, 429, 204)
    assert client.post(url, {}, b"{}").status == 200 and server.connections == 1  # kept
    if response.status == 429:
        assert response.headers["retry-after"] == "7"  # names in lower case


def test_an_answer_that_closes_the_connection_is_read_to_its_end_and_the_next_reconnects(serve):
    server, url = serve(b"HTTP/1.0 500 Oops\r\n\r\nno length", None, OK)
    client = Client(read_timeout=5)
    assert client.post(url, {}, b"1").data == b"no length"
    assert client.post(url, {}, b"2").status == 200 and server.connections == 2


def test_a_kept_connection_the_server_closed_meanwhile_is_not_reused(serve):
    server, url = serve(OK, None, OK)
    client = Client(read_timeout=5)
    client.post(url, {}, b"1")
    assert server.closed.wait(5)
    assert client.post(url, {}, b"2").status == 200  # no error: a new connection
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"", "RemoteDisconnected"),  # closed without a word
        (b"SMTP ready\r\n\r\n", "BadResponse"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "IncompleteRead"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "BadResponse"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n", "BadResponse"),
    ],
)
def test_failures_on_the_way_are_transport_errors_and_drop_the_connection(serve, answer, kind):
    server, url = serve(answer, None, OK)
    client = Client(read_timeout=2)
    with pytest.raises(TransportError) as failed:
        client.post(url, {}, b"{}")
    assert failed.value.kind == kind
    assert client.post(url, {}, b"{}").status == 200 and server.connections == 2


def test_no_answer_in_time_and_no_server_at_all_are_transport_errors():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    port = silent.getsockname()[1]
    with pytest.raises(TransportError) as late:
        Client(read_timeout=0.2).post(f"http://127.0.0.1:{port}/", {}, b"{}")
    silent.close()
    with pytest.raises(TransportError) as refused:
        Client(connect_timeout=1).post(f"http://127.0.0.1:{port}/", {}, b"{}")
    assert (late.value.kind, refused.value.kind) == ("ReadTimeout", "ConnectError")


def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent(serve):
    server, url = serve(OK)
    with pytest.raises(ValueError, match="line break"):
        Client().post(url, {"X-Key": "k\r\nX-Evil: 1"}, b"{}")
    with pytest.raises(ValueError, match="http"):
        Client().post("ftp://127.0.0.1/", {}, b"")
    assert server.requests == []


def test_an_answer_sent_before_the_body_was_read_is_the_answer():
    """A server that refuses a body at the door (413) and closes while it is still being sent:
    the send fails, and the answer it sent first is read, as urllib3 reads it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def refuse() -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as reader:
            while reader.readline() not in (b"\r\n", b""):
                pass  # the head, then no byte of the body
            connection.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")

    threading.Thread(target=refuse, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    response = Client(read_timeout=5).post(url, {}, [b"x" * 1_000_000] * 40)
    listener.close()
    assert (response.status, response.data) == (413, b"big")
