"""Refuse to serve an API without authentication on an address other machines can reach.

The address checked is the one uvicorn's command line binds (`--host`, or `UVICORN_HOST`), parsed
exactly as uvicorn parses it; when the app is served some other way, it is the HOST setting.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from settings import Settings

logger = logging.getLogger("orchestrator.api")


class InsecureBind(RuntimeError):
    """AUTH_MODE=none on a non-loopback address without ALLOW_INSECURE_BIND=true."""


def uvicorn_command_line_host() -> str | None:
    """The host `uvicorn …` or `python -m uvicorn …` binds; None when uvicorn's CLI did not start us."""
    program = Path(sys.argv[0])
    if program.name != "uvicorn" and program.parent.name != "uvicorn":
        return None
    from uvicorn.main import main as uvicorn_cli

    context = uvicorn_cli.make_context("uvicorn", sys.argv[1:], resilient_parsing=True)
    if context.params.get("uds"):
        return "localhost"  # a unix socket is reachable only from this machine
    host = context.params.get("host")
    return str(host) if host else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname might resolve to any interface


def check_bind_address(settings: Settings, host: str) -> None:
    if settings.auth_mode != "none" or settings.allow_insecure_bind or is_loopback(host):
        return
    raise InsecureBind(
        f"Refusing to serve the API on {host} with AUTH_MODE=none: anyone who can reach it "
        "could start, approve and cancel runs. Bind to 127.0.0.1, or set AUTH_MODE=api_key "
        "or oidc, or set ALLOW_INSECURE_BIND=true if something in front of the API "
        "authenticates callers."
    )


def served_host(settings: Settings) -> str:
    return uvicorn_command_line_host() or settings.host


@asynccontextmanager
async def refuse_insecure_bind(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan: runs as uvicorn starts the app, so the check sees how it is really served."""
    settings: Settings = app.state.settings
    try:
        check_bind_address(settings, served_host(settings))
    except InsecureBind as err:
        logger.critical(str(err))
        raise
    yield
