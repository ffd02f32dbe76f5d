"""OIDC bearer tokens: signature against the issuer's JWKS, issuer, audience, expiry, roles."""

from __future__ import annotations

import asyncio

import jwt

from api.errors import ServiceUnavailable, Unauthorized
from api.principals import Principal, Role
from settings import Settings

# Asymmetric algorithms only: a JWKS publishes public keys, and accepting HS* or "none" would
# let anyone who reads the JWKS sign tokens.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class OidcConfigError(ValueError):
    """AUTH_MODE=oidc without the settings it needs."""


def roles_from_claims(claims: dict[str, object], path: str) -> frozenset[Role]:
    """Our roles found at the dotted claim `path`; unknown role names are the IdP's own, ignored."""
    value: object = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    names = value.split() if isinstance(value, str) else value
    if not isinstance(names, list):
        return frozenset()
    return frozenset(Role(name) for name in names if name in Role._value2member_map_)


class OidcVerifier:
    def __init__(self, settings: Settings) -> None:
        missing = [
            name
            for name, value in (
                ("OIDC_ISSUER", settings.oidc_issuer),
                ("OIDC_AUDIENCE", settings.oidc_audience),
                ("OIDC_JWKS_URL", settings.oidc_jwks_url),
            )
            if not value
        ]
        if missing:
            raise OidcConfigError(f"AUTH_MODE=oidc needs {', '.join(missing)} to be set.")
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.jwks_url = str(settings.oidc_jwks_url)
        self.leeway = settings.oidc_leeway_seconds
        self.roles_claim = settings.oidc_roles_claim
        # Keys are cached; an unknown `kid` makes the client fetch the JWKS again (key rotation).
        self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    async def principal_for(self, token: str) -> Principal:
        try:
            # Fetching the JWKS is blocking network I/O; keep it off the event loop.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as err:
            raise ServiceUnavailable(
                f"The identity provider's keys at {self.jwks_url} cannot be fetched ({err}); "
                "check OIDC_JWKS_URL and that the provider is up."
            ) from err
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as err:
            raise Unauthorized(
                f"The bearer token was refused: {err}.",
                headers={
                    "WWW-Authenticate": f'Bearer realm="orchestrator", error="invalid_token", '
                    f'error_description="{_quoted(str(err))}"'
                },
            ) from err
        return Principal(name=str(claims["sub"]), roles=roles_from_claims(claims, self.roles_claim))


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")
