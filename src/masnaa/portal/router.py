"""``mount_portal(app)``: the web portal on the API's application, under ``/``.

The portal is server-rendered HTML (Jinja2) over the same service layer as
the API, with one CSS file and one small script (``static/``), in English,
French and Arabic (``locales/``). See docs/portal.md for the pages.

Mounting adds the portal's routes (no OpenAPI entries: they are pages, not
the API) and its shared template environment to ``app.state``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from masnaa.portal import (
    routes_account,
    routes_alloc,
    routes_audit,
    routes_data,
    routes_jobs,
    routes_ops,
    routes_review,
    routes_twin,
)
from masnaa.portal.web import Portal


def build_portal_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for module in (routes_account, routes_jobs, routes_ops, routes_twin):
        router.include_router(module.router)
    for module in (routes_data, routes_audit):
        router.include_router(module.router)
    for module in (routes_alloc, routes_review):
        router.include_router(module.router)
    return router


def mount_portal(app: FastAPI, portal: Portal | None = None) -> FastAPI:
    """Serve the portal from ``app`` (an app made by ``masnaa.api.create_app``).
    Idempotent: a second call on the same app adds nothing."""
    if getattr(app.state, "masnaa_portal", None) is not None:
        return app
    app.state.masnaa_portal = portal or Portal()
    app.state.masnaa_portal.env.globals["shows_reviews"] = routes_review.may_review
    app.include_router(build_portal_router())
    return app
