"""Per-request plumbing of the portal: language, caller, CSRF, templates, error pages.

- ``Page`` is what every handler receives: the app's state, the language,
  the signed-in caller (or ``None``) and the CSRF token of this browser.
- ``PortalRoute`` turns the exceptions of a handler into pages: no sign-in →
  the sign-in page (``303``, with ``next``); a bad CSRF token → ``403`` page;
  a ``ServiceError`` → a page with the service's status, so another tenant's
  job is the same ``404`` page as a job that does not exist.
- Templates autoescape everything (``select_autoescape`` on ``.html``), and
  every page answers with a strict Content-Security-Policy: scripts and
  styles only from this origin, no inline script, no frames.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.exc import OperationalError

from masnaa.api.deps import AppState
from masnaa.portal import labels, session
from masnaa.portal.assets import Assets
from masnaa.portal.i18n import LANG_COOKIE, LANGUAGES, Lang, choose_language
from masnaa.portal.labels import N_
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store.db import DatabaseFileGone

TEMPLATES_DIR = Path(__file__).parent / "templates"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    return env


@dataclass
class Portal:
    """What the portal's routes share: templates and static files."""

    env: Environment = field(default_factory=make_environment)
    assets: Assets = field(default_factory=Assets)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.masnaa
    return state


def portal_of(request: Request) -> Portal:
    found: Portal = request.app.state.masnaa_portal
    return found


@dataclass
class Page:
    request: Request
    state: AppState
    portal: Portal
    lang: Lang
    caller: Caller | None
    cookies: dict[str, str] = field(default_factory=dict)
    """Cookies to set on the response (language choice, pre-sign-in CSRF)."""

    @property
    def now(self) -> float:
        return self.state.now()

    @property
    def csrf(self) -> str:
        return session.csrf_token(self.request, self.cookies)

    def signed_in(self) -> Caller:
        if self.caller is None:
            raise session.SignInRequired
        return self.caller

    def operator(self) -> Caller:
        """The caller, when an operator; anyone else gets the not-found page."""
        caller = self.signed_in()
        if not caller.is_operator:
            raise ServiceError("page-not-found", "no such page", status=404)
        return caller

    def _(self, message: str, **values: Any) -> str:
        return self.lang.gettext(message, **values)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        lang = self.lang
        context = {
            "page": self,
            "lang": lang,
            "me": self.caller,
            "csrf": self.csrf if self.caller is not None or template == "login.html" else "",
            "_": lang.gettext,
            "gettext": lang.gettext,
            "ngettext": lang.ngettext,
            "static": self.portal.assets.url,
            "languages": LANGUAGES,
            "lang_links": self.lang_links(),
            "labels": labels,
            "path": self.request.url.path,
            "now": self.now,
            **values,
        }
        body = self.portal.env.get_template(template).render(context)
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        self.finish(response)
        return response

    def lang_links(self) -> dict[str, str]:
        """The same page in each language: its query kept (the statement, the site, the
        comparison the address names), only ``lang`` replaced."""
        kept = [(k, v) for k, v in self.request.query_params.multi_items() if k != "lang"]
        return {code: "?" + urlencode([*kept, ("lang", code)]) for code in LANGUAGES}

    def redirect(self, url: str) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        if self.request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, self.lang.code, max_age=365 * 86400, samesite="lax",
                secure=session.is_https(self.request), httponly=True, path="/",
            )
        pre = self.cookies.get(session.PRE_SESSION_COOKIE)
        if pre:
            session.set_pre_session(response, self.request, pre)


def language_of(request: Request) -> Lang:
    return Lang(
        choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )
    )


def build_page(request: Request) -> Page:
    state = app_state(request)
    now = state.now()
    token = session.session_token(request)
    caller = None
    if token:
        with state.db.read() as read:
            caller, stale = session.resolve_caller(read, token, now)
        if caller is not None and stale:
            with state.db.write() as write:
                session.touch(write, caller, now)
    return Page(request, state, portal_of(request), language_of(request), caller)


PageDep = Annotated[Page, Depends(build_page)]


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    page = Page(
        request, app_state(request), portal_of(request), language_of(request), None
    )
    # The error page is rendered without the caller (no nav), so a failure in
    # reading the caller never hides the error.
    return page.render(
        "error.html", status=status, title=page._(title), message=page._(message)
    )


def safe_next(target: str | None) -> str:
    """A local path to return to after sign-in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class PortalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except session.SignInRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                return RedirectResponse(
                    f"/login?next={quote(target, safe='')}", status_code=303,
                    headers=SECURITY_HEADERS,
                )
            except session.CsrfRejected:
                return error_page(
                    request, 403, N_("Form expired"),
                    N_("This form could not be verified. Go back, reload the page and try again."),
                )
            except (DatabaseFileGone, OperationalError):
                return error_page(
                    request, 503, N_("Unavailable"),
                    N_("The factory's records cannot be read right now. Try again in a "
                       "moment; if this lasts, tell the operators."),
                )
            except RequestValidationError:
                # An address edited by hand, or a value a page's own checks did not
                # expect: a page in the reader's language, never the API's JSON.
                return error_page(
                    request, 422, N_("Cannot read this address"),
                    N_("A value in this address or form cannot be read. Go back, check "
                       "what you typed and try again."),
                )
            except ServiceError as exc:
                if exc.status == 404:
                    return error_page(
                        request, 404, N_("Not found"),
                        N_("There is no such page, or it is not visible to you."),
                    )
                if exc.status == 403:
                    return error_page(
                        request, 403, N_("Not allowed"), N_("Your role does not allow this.")
                    )
                if exc.status == 409:
                    return error_page(
                        request, 409, N_("Already changed"),
                        N_("This changed since the page was shown. Reload it and look again."),
                    )
                raise

        return handler
