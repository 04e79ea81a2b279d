"""Signing in and out, and the static files.

``GET /login`` shows the sign-in form; ``POST /login`` checks the token with
the API's own authentication and keeps it in the session cookie (see
``portal.session``); ``POST /logout`` forgets it. A wrong token is shown next
to its field in the user's language, and the page keeps ``next``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from masnaa.portal import session
from masnaa.portal.web import PageDep, PortalRoute, portal_of, safe_next
from masnaa.service.tenancy import ServiceError

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
sign_in_methods: dict[str, session.Authenticator] = {"token": session.TokenSignIn()}


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    return portal_of(request).assets.respond(request, name)


@router.get("/login")
def login_form(page: PageDep, next: str = "/") -> Response:
    if page.caller is not None:
        return page.redirect(safe_next(next))
    return page.render("login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(
    page: PageDep,
    token: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    session.check_csrf(page.request, csrf_token)
    target = safe_next(next)
    try:
        with page.state.db.read() as read:
            secret, _ = sign_in_methods["token"].sign_in(read, token, page.now)
    except ServiceError:
        error = page._(
            "This token is not valid: check it, or ask your tenant admin for a new one."
        )
        return page.render("login.html", status=401, next=target, error=error)
    response = page.redirect(target)
    session.set_session(response, page.request, secret)
    return response


@router.post("/logout")
def logout(page: PageDep, csrf_token: Annotated[str, Form(max_length=256)] = "") -> Response:
    session.check_csrf(page.request, csrf_token)
    response = page.redirect("/login")
    session.clear_session(response, page.request)
    return response
