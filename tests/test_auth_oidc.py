"""AUTH_MODE=oidc over real HTTP: tokens this test signs, checked against a JWKS it serves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses
from tests.identity_provider import KID, IdentityProvider

pytestmark = pytest.mark.integration

ISSUER = "https://idp.test/realms/team"
AUDIENCE = "orchestrator-api"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def oidc_api(
    dev_server_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: rsa.RSAPrivateKey,
) -> Iterator[str]:
    # Only its JWKS is used here: these callers bring their own tokens.
    with IdentityProvider(audience=AUDIENCE, client_id="unused", key=signing_key) as jwks:
        processes = ServiceProcesses(
            dev_server_env.client.service_client.config.target_host,
            tmp_path_factory.mktemp("oidc"),
            AUTH_MODE="oidc",
            OIDC_ISSUER=ISSUER,
            OIDC_AUDIENCE=AUDIENCE,
            OIDC_JWKS_URL=jwks.jwks_url,
            OIDC_ROLES_CLAIM="realm_access.roles",
            OIDC_LEEWAY_SECONDS="30",
        )
        processes.start_api()
        try:
            yield processes.base_url
        finally:
            processes.stop()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "carol",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": ["viewer", "offline_access"]},
    }
    return {**base, **overrides}


def sign(key: Any, payload: dict[str, Any], kid: str = KID, algorithm: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def list_runs(base_url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{base_url}/workflows", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_a_valid_token_reads_with_the_roles_from_the_configured_claim(
    oidc_api: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = sign(signing_key, claims())
    assert list_runs(oidc_api, token).status_code == 200
    started = httpx.post(
        f"{oidc_api}/workflow/start",
        json={"user_goal": "g", "dataset_url": "missing.csv"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert started.status_code == 403
    assert "'operator'" in started.json()["detail"] and "carol" in started.json()["detail"]


def test_a_token_within_the_clock_skew_leeway_is_accepted(
    oidc_api: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = sign(signing_key, claims(exp=int(time.time()) - 10))
    assert list_runs(oidc_api, token).status_code == 200


def test_a_token_with_none_of_our_roles_may_not_even_read(
    oidc_api: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = sign(signing_key, claims(realm_access={"roles": ["offline_access"]}))
    response = list_runs(oidc_api, token)
    assert response.status_code == 403
    assert "'viewer'" in response.json()["detail"]


def bad_tokens(signing_key: rsa.RSAPrivateKey) -> dict[str, str]:
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode(claims(), key=None, algorithm="none", headers={"kid": KID})
    return {
        "expired": sign(signing_key, claims(exp=int(time.time()) - 120)),
        "wrong audience": sign(signing_key, claims(aud="another-api")),
        "wrong issuer": sign(signing_key, claims(iss="https://evil.test/")),
        "wrong signature": sign(rsa_key(), claims()),
        "unknown kid": sign(rsa_key(), claims(), kid="key-attacker"),
        "no expiry": sign(signing_key, {k: v for k, v in claims().items() if k != "exp"}),
        # Algorithm confusion: the public key (anyone can read it) used as an HMAC secret.
        "hs256 with the public key": _hs256_with(public_pem, claims()),
        "alg none": unsigned,
        "not a jwt": "orc_some-api-key",
    }


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """HS256 signed by hand: PyJWT refuses to use a PEM public key as an HMAC secret itself."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong audience",
        "wrong issuer",
        "wrong signature",
        "unknown kid",
        "no expiry",
        "hs256 with the public key",
        "alg none",
        "not a jwt",
    ],
)
def test_a_bad_token_is_refused_with_401_and_an_invalid_token_challenge(
    oidc_api: str, signing_key: rsa.RSAPrivateKey, case: str
) -> None:
    response = list_runs(oidc_api, bad_tokens(signing_key)[case])
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.json()["detail"].startswith("The bearer token was refused")


def test_without_a_token_the_challenge_names_bearer(oidc_api: str) -> None:
    for headers in ({}, {"X-API-Key": "orc_some-api-key"}):
        response = httpx.get(f"{oidc_api}/workflows", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
