"""The reviewer's desk: web pages under /ui, served by the API from files in this package."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui.error_pages import DeskErrorPages
from api.ui.oidc_login import install_oidc_login
from api.ui.routes import environment, router
from settings import Settings


def install_desk(app: FastAPI, settings: Settings) -> None:
    """Add the desk's pages, its static files and its error pages to the API."""
    install_oidc_login(app, settings)  # before the pages: /ui/login/oidc is not a run page
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(packages=[("api.ui", "static")]), name="desk-static")
    app.add_middleware(DeskErrorPages, error_template=environment.get_template("error.html"))


__all__ = ["install_desk"]
