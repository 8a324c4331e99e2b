"""Pushes over TLS, as to the real partners: bodies handed to the socket as the buffers that
hold them arrive whole, and a certificate nobody trusts is refused."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from currents_relay.delivery.engine import Delivery, DeliveryIncomplete, RetryPolicy, Selection
from currents_relay.delivery.http_client import Client
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import enabled_destinations
from currents_relay.sandbox import Sandbox
from tests.conftest import HOUR
from tests.delivery.conftest import endpoint

LARGE_BODIES = ["treasure_data", "segment"]  # bodies of several chunks' slices


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def destination(name: str):
    return next(d for d in enabled_destinations() if d.name == name)


@pytest.mark.parametrize("name", LARGE_BODIES)
def test_a_push_over_tls_delivers_every_event_once(lake, tmp_path, name):
    cert, key = self_signed(tmp_path)
    pushed = destination(name)
    with Sandbox(names=[pushed.partner], tls=(cert, key)) as sandbox:
        sim = sandbox.sims[pushed.partner]
        partner = build_partner(pushed, endpoint(sandbox, pushed.partner))
        trusting = Client(ca_file=str(cert))
        counts = Delivery(str(lake), HOUR, partner, Selection(), client=trusting).run()
    assert partner.endpoint.url.startswith("https://")
    assert counts["delivered"] == counts["selected"] > 0 and counts["pending"] == 0
    assert sim.accepted_events == counts["delivered"] and sim.duplicates == 0  # bodies whole


def test_a_certificate_nobody_trusts_is_refused(lake, tmp_path):
    cert, key = self_signed(tmp_path)
    policy = RetryPolicy(budget_seconds=0.3, base_delay=0.01, max_delay=0.05)
    with Sandbox(names=["treasure_data"], tls=(cert, key)) as sandbox:
        sim = sandbox.sims["treasure_data"]
        partner = build_partner(destination("treasure_data"), endpoint(sandbox, "treasure_data"))
        delivery = Delivery(str(lake), HOUR, partner, Selection(), policy=policy)
        with pytest.raises(DeliveryIncomplete):
            delivery.run()  # the default client trusts the public authorities only
    assert sim.requests == 0 and delivery.counts()["delivered"] == 0
    assert delivery.stats.statuses["SSLError"] > 0


def test_a_tls_connection_is_kept_between_requests(tmp_path):
    """TLS 1.3 servers send session tickets after the handshake: they must not make the
    kept connection look dropped (a new handshake per request)."""
    cert, key = self_signed(tmp_path)
    with Sandbox(names=["custom_http"], tls=(cert, key), check_bodies=False) as sandbox:
        client = Client(ca_file=str(cert))
        connects = []
        real_connect = client._connect
        client._connect = lambda target: connects.append(target) or real_connect(target)
        url = sandbox.urls()["custom_http"] + "/events"
        statuses = {client.post(url, {}, b'{"events": []}').status for _ in range(20)}
        client.close()
    assert statuses == {200} and len(connects) == 1
