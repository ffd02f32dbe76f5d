"""temporal_connection.py: the worker and the API reach Temporal with the same TLS and API key.

The mTLS tests put a real TLS listener on loopback that demands a client certificate signed by
a test CA, and connect through worker.connect and the API's TemporalGateway: what the listener
sees on the wire is what a Temporal frontend would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.service import TLSConfig

from api.errors import TemporalUnavailable
from api.runs import TemporalGateway
from settings import Settings
from temporal_connection import TemporalConfigError, temporal_connect_options, tls_config
from tests.conftest import free_port

SERVER_NAME = "temporal.test"  # the server certificate names this host, not 127.0.0.1
CLIENT_NAME = "orchestrator-worker"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@dataclass
class Pki:
    """A test CA, a server certificate for SERVER_NAME and a client certificate, as PEM files."""

    folder: Path
    ca: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    client_cert: Path = field(init=False)
    client_key: Path = field(init=False)

    def __post_init__(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        ca_cert = (
            self._builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        self.ca = self._write("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._leaf(
            "server", SERVER_NAME, ExtendedKeyUsageOID.SERVER_AUTH, ca_cert, ca_key
        )
        self.client_cert, self.client_key = self._leaf(
            "client", CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, ca_cert, ca_key
        )

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
        )

    def _leaf(
        self,
        stem: str,
        name: str,
        usage: x509.ObjectIdentifier,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
                ca_cert.subject,
                key.public_key(),
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return (
            self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{stem}.key", key_pem),
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@dataclass
class TlsListener:
    """Loopback TLS that requires a client certificate from the test CA; records each handshake."""

    address: str
    client_names: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@pytest.fixture
def tls_listener(pki: Pki) -> Iterator[TlsListener]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    port = free_port()
    listener = TlsListener(f"127.0.0.1:{port}")
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    subject = dict(part[0] for part in tls.getpeercert()["subject"])  # type: ignore[index]
                    listener.client_names.append(str(subject["commonName"]))
            except (ssl.SSLError, OSError) as err:
                listener.failures.append(str(err))
            finally:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener
    stop.set()
    thread.join(timeout=5)
    server.close()


def worker_connect(settings: Settings) -> Coroutine[Any, Any, Client]:
    """worker.connect, imported when used: the worker module pulls in every activity."""
    import worker

    return worker.connect(settings)


def mtls_settings(pki: Pki, address: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": address,
        "temporal_tls_cert_path": pki.client_cert,
        "temporal_tls_key_path": pki.client_key,
        "temporal_tls_ca_path": pki.ca,
        "temporal_tls_server_name": SERVER_NAME,
    }
    return settings(**(values | extra))


async def _connect_until_refused(connect: object) -> None:
    """Connecting fails once TLS is up (the listener speaks no gRPC); that failure is expected."""
    assert asyncio.iscoroutine(connect)
    with contextlib.suppress(RuntimeError, TemporalUnavailable):
        await asyncio.wait_for(connect, timeout=30)


async def test_worker_presents_its_client_certificate(pki: Pki, tls_listener: TlsListener) -> None:
    await _connect_until_refused(worker_connect(mtls_settings(pki, tls_listener.address)))
    assert CLIENT_NAME in tls_listener.client_names, tls_listener.failures


async def test_api_presents_the_same_client_certificate(
    pki: Pki, tls_listener: TlsListener
) -> None:
    gateway = TemporalGateway(mtls_settings(pki, tls_listener.address))
    await _connect_until_refused(gateway.client())
    assert CLIENT_NAME in tls_listener.client_names, tls_listener.failures


async def test_without_a_client_certificate_the_cluster_refuses_the_handshake(
    pki: Pki, tls_listener: TlsListener
) -> None:
    server_only = mtls_settings(
        pki, tls_listener.address, temporal_tls_cert_path=None, temporal_tls_key_path=None
    )
    await _connect_until_refused(TemporalGateway(server_only).client())
    assert not tls_listener.client_names
    assert tls_listener.failures  # the listener saw a client that had no certificate to show


async def test_the_server_certificate_is_checked_against_the_server_name(
    pki: Pki, tls_listener: TlsListener
) -> None:
    # Without TEMPORAL_TLS_SERVER_NAME the client expects a certificate for 127.0.0.1, which
    # the server does not have: the client walks away before presenting its own.
    unnamed = mtls_settings(pki, tls_listener.address, temporal_tls_server_name=None)
    await _connect_until_refused(TemporalGateway(unnamed).client())
    assert not tls_listener.client_names


def test_plain_settings_connect_without_tls() -> None:
    options = temporal_connect_options(settings(temporal_address="temporal:7233"))
    assert options["target_host"] == "temporal:7233"
    assert options["namespace"] == "default"
    assert options["tls"] is False
    assert options["api_key"] is None


def test_traces_ride_with_every_call_unless_tracing_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    traced = temporal_connect_options(settings())["interceptors"]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    untraced = temporal_connect_options(settings())["interceptors"]

    assert [type(i) for i in traced] == [TracingInterceptor]
    assert list(untraced) == []


def test_an_api_key_alone_uses_tls_with_the_system_cas() -> None:
    options = temporal_connect_options(settings(temporal_api_key="tmprl-key"))
    assert options["api_key"] == "tmprl-key"
    assert options["tls"] is True


def test_tls_files_are_read_into_the_config(pki: Pki) -> None:
    config = tls_config(mtls_settings(pki, "127.0.0.1:7233"))
    assert isinstance(config, TLSConfig)
    assert config.client_cert == pki.client_cert.read_bytes()
    assert config.client_private_key == pki.client_key.read_bytes()
    assert config.server_root_ca_cert == pki.ca.read_bytes()
    assert config.domain == SERVER_NAME


def test_a_certificate_without_its_key_is_refused_naming_both(pki: Pki) -> None:
    with pytest.raises(
        TemporalConfigError, match="TEMPORAL_TLS_CERT_PATH is set but TEMPORAL_TLS_KEY_PATH"
    ):
        tls_config(settings(temporal_tls_cert_path=pki.client_cert))
    with pytest.raises(
        TemporalConfigError, match="TEMPORAL_TLS_KEY_PATH is set but TEMPORAL_TLS_CERT_PATH"
    ):
        tls_config(settings(temporal_tls_key_path=pki.client_key))


def test_a_missing_file_is_reported_by_setting_and_path(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted" / "ca.crt"
    with pytest.raises(TemporalConfigError, match=f"TEMPORAL_TLS_CA_PATH={missing} cannot be read"):
        tls_config(settings(temporal_tls_ca_path=missing))


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(TemporalConfigError, match="is not a PEM file"):
        tls_config(settings(temporal_tls_ca_path=der))


async def test_the_api_answers_503_naming_the_setting_when_a_file_is_missing(
    tmp_path: Path,
) -> None:
    gateway = TemporalGateway(settings(temporal_tls_ca_path=tmp_path / "ca.crt"))
    with pytest.raises(TemporalUnavailable, match="TEMPORAL_TLS_CA_PATH"):
        await gateway.client()


def test_the_default_settings_reach_loopback_without_tls() -> None:
    # The default (make dev) stays plaintext on loopback.
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert ipaddress.ip_address(default.temporal_address.rsplit(":", 1)[0]).is_loopback
    assert tls_config(default) is False
