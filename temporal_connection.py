"""How every process of the service connects to Temporal: address, namespace, TLS, API key.

The worker and the API build their clients from the same options, so a cluster that needs mTLS
or an API key is configured once (TEMPORAL_* settings) and both sides agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from temporalio.client import Interceptor
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from payload_codec import data_converter
from settings import Settings
from telemetry import tracing_interceptors


class TemporalConfigError(RuntimeError):
    """The TEMPORAL_* settings cannot describe a connection; the message says which to fix."""


class TemporalConnectOptions(TypedDict):
    """Keyword arguments for `temporalio.client.Client.connect`."""

    target_host: str
    namespace: str
    api_key: str | None
    tls: bool | TLSConfig
    data_converter: DataConverter
    interceptors: Sequence[Interceptor]


def temporal_connect_options(settings: Settings) -> TemporalConnectOptions:
    """`Client.connect(**temporal_connect_options(settings))` for this service's cluster.

    Reads the TLS files now, so a missing or unreadable Secret mount is reported by name
    instead of as a failed handshake.
    """
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return TemporalConnectOptions(
        target_host=settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        interceptors=tracing_interceptors(),
    )


def tls_config(settings: Settings) -> bool | TLSConfig:
    """TLS as the settings ask for it: off, system defaults (API key only), or the given files."""
    cert, key = settings.temporal_tls_cert_path, settings.temporal_tls_key_path
    if (cert is None) != (key is None):
        given, missing = (
            ("TEMPORAL_TLS_CERT_PATH", "TEMPORAL_TLS_KEY_PATH")
            if cert
            else ("TEMPORAL_TLS_KEY_PATH", "TEMPORAL_TLS_CERT_PATH")
        )
        raise TemporalConfigError(
            f"{given} is set but {missing} is not: an mTLS client needs both its certificate "
            "and its private key."
        )
    ca, server_name = settings.temporal_tls_ca_path, settings.temporal_tls_server_name
    if cert is None and ca is None and server_name is None:
        # Temporal Cloud's API keys travel only over TLS; the system CAs check its certificate.
        return settings.temporal_api_key is not None
    return TLSConfig(
        server_root_ca_cert=_read_pem(ca, "TEMPORAL_TLS_CA_PATH") if ca else None,
        client_cert=_read_pem(cert, "TEMPORAL_TLS_CERT_PATH") if cert else None,
        client_private_key=_read_pem(key, "TEMPORAL_TLS_KEY_PATH") if key else None,
        domain=server_name,
    )


def _read_pem(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TemporalConfigError(
            f"{setting}={path} cannot be read ({err.strerror}): mount the Secret holding it "
            "there, or unset the setting."
        ) from err
    if b"-----BEGIN " not in data:
        raise TemporalConfigError(f"{setting}={path} is not a PEM file (no '-----BEGIN' line).")
    return data
