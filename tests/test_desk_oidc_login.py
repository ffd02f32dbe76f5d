"""The desk's own sign-in with an identity provider (authorization code with PKCE), over the
real API and a provider served on loopback: it works, and the ways around it do not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.security import SESSION_COOKIE
from api.ui.oidc_login import DeskLoginConfigError
from settings import Settings
from tests.conftest import ServiceProcesses, free_port
from tests.identity_provider import IdentityProvider

pytestmark = pytest.mark.integration

AUDIENCE = "orchestrator-api"
CLIENT_ID = "orchestrator-desk"


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    with IdentityProvider(audience=AUDIENCE, client_id=CLIENT_ID) as idp:
        yield idp


@pytest.fixture(scope="module")
def desk(
    dev_server_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    provider: IdentityProvider,
) -> Iterator[str]:
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        tmp_path_factory.mktemp("desk-oidc"),
        AUTH_MODE="oidc",
        OIDC_ISSUER=provider.issuer,
        OIDC_AUDIENCE=AUDIENCE,
        OIDC_JWKS_URL=provider.jwks_url,
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_SCOPES="openid profile",
        DESK_SESSION_SECRET="a-test-secret-that-is-long-enough-0123456789",
    )
    processes.start_api()
    try:
        yield processes.base_url
    finally:
        processes.stop()


@pytest.fixture
def audience_told(provider: IdentityProvider) -> Iterator[IdentityProvider]:
    yield provider
    provider.access_audience = None


def browser_for(desk: str) -> httpx.Client:
    """Follows redirects and keeps cookies per host, as a browser does."""
    return httpx.Client(base_url=desk, follow_redirects=True, timeout=30)


def test_a_reviewer_signs_in_at_the_provider_and_lands_on_the_inbox(
    desk: str, provider: IdentityProvider
) -> None:
    with browser_for(desk) as browser:
        login = browser.get("/ui/inbox")  # a desk page sends a stranger to sign in
        assert login.url.path == "/ui/login", login.url
        button = 'data-testid="oidc-sign-in"'
        assert button in login.text
        landed = browser.get("/ui/login/oidc", params={"next": "/ui/inbox"})
        cookie = browser.cookies.get(SESSION_COOKIE)
        api_call = browser.get("/workflows")  # the same cookie works for the API

    assert landed.status_code == 200, landed.text
    assert landed.url.path == "/ui/inbox"
    assert [r.url.host for r in landed.history][:2] == ["127.0.0.1", "127.0.0.1"]
    # PKCE: the provider saw an S256 challenge and the matching verifier came with the code.
    assert provider.token_requests[-1]["code_verifier"]
    assert jwt.decode(cookie or "", options={"verify_signature": False})["aud"] == AUDIENCE
    assert api_call.status_code == 200, api_call.text


def test_a_forged_callback_signs_nobody_in(desk: str, provider: IdentityProvider) -> None:
    with httpx.Client(base_url=desk, timeout=30) as browser:
        to_provider = browser.get("/ui/login/oidc")
        back = httpx.get(to_provider.headers["location"]).headers["location"]
        code = httpx.URL(back).params["code"]
        forged = browser.get("/ui/login/callback", params={"code": code, "state": "forged"})
        inbox = browser.get("/ui/inbox")

    assert forged.status_code == 401
    assert "did not complete" in forged.text
    assert SESSION_COOKIE not in forged.cookies
    assert code in provider.grants, "the code was never exchanged"
    assert inbox.status_code == 303 and "/ui/login" in inbox.headers["location"]


def test_a_token_for_another_audience_is_refused_at_sign_in(
    desk: str, audience_told: IdentityProvider
) -> None:
    audience_told.access_audience = "some-other-api"
    with browser_for(desk) as browser:
        refused = browser.get("/ui/login/oidc", params={"next": "/ui/inbox"})

    assert refused.status_code == 401
    assert "OIDC_AUDIENCE" in refused.text
    assert SESSION_COOKIE not in browser.cookies


def oidc_settings(tmp_path: Path, issuer: str, **extra: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        auth_mode="oidc",
        oidc_issuer=issuer,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=f"{issuer}/jwks",
        oidc_client_id=CLIENT_ID,
        **extra,  # type: ignore[arg-type]
    )


def test_a_client_id_without_a_session_secret_stops_the_api(tmp_path: Path) -> None:
    with pytest.raises(DeskLoginConfigError, match="DESK_SESSION_SECRET"):
        create_app(oidc_settings(tmp_path, "https://idp.example"))


def test_a_provider_that_does_not_answer_is_a_503_that_names_it(tmp_path: Path) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(oidc_settings(tmp_path, issuer, desk_session_secret="s" * 40))

    with TestClient(app) as browser:
        page = browser.get("/ui/login/oidc", follow_redirects=False)

    assert page.status_code == 503
    assert issuer in page.text and "OIDC_ISSUER" in page.text
