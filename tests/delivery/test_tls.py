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

from currents_relay.delivery.engine import Delivery, DeliveryStopped, Selection
from currents_relay.delivery.push import build_partner
from currents_relay.destinations import enabled_destinations
from currents_relay.tools.sandbox import Sandbox
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
        trusting = endpoint(sandbox, pushed.partner, verify=str(cert))
        partner = build_partner(pushed, trusting)
        counts = Delivery(str(lake), HOUR, partner, Selection()).run()
    assert partner.endpoint.url.startswith("https://")
    assert counts["delivered"] == counts["selected"] > 0 and counts["pending"] == 0
    assert sim.accepted_events == counts["delivered"] and sim.duplicates == 0  # bodies whole


def test_a_certificate_nobody_trusts_is_refused(lake, tmp_path):
    cert, key = self_signed(tmp_path)
    with Sandbox(names=["treasure_data"], tls=(cert, key)) as sandbox:
        sim = sandbox.sims["treasure_data"]
        partner = build_partner(destination("treasure_data"), endpoint(sandbox, "treasure_data"))
        delivery = Delivery(str(lake), HOUR, partner, Selection())
        with pytest.raises(DeliveryStopped, match=r"certificate is not trusted.*verify"):
            delivery.run()  # the default trusts the public authorities only
    counts = delivery.counts()
    assert sim.requests == 0 and counts["delivered"] == 0 and counts["requests"] == 1
    assert counts["statuses"] == {"SSLError": 1}
