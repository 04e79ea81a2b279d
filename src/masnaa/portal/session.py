"""Who is signed in to the portal, and the CSRF token of every form.

Terms:
- The **session cookie** (``masnaa_session``) carries the user's API token:
  HttpOnly (no script reads it), ``SameSite=Lax`` (other sites' forms do not
  send it), ``Secure`` when the portal is reached over https, ``Path=/``.
  The token is checked on every request with the API's own
  ``service.tokens.authenticate``, so an expired or revoked token signs the
  browser out at once and the portal sees exactly what the API would.
- **Sign-in methods** are ``Authenticator`` objects: today one reads a token
  typed into the sign-in form. OIDC will be a second one that, after the
  institution's redirect, issues a short-lived API token for the user and
  sets the same cookie; nothing downstream changes.
- **CSRF**: every state-changing POST carries a token that a page of another
  site cannot know. Signed-in: HMAC-SHA256 of a fixed label keyed by the
  SHA-256 of the session token (bound to this session, works across API
  workers with no shared secret). Before sign-in: a random ``masnaa_csrf``
  cookie echoed in the form (double submit). Both compare in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

from fastapi import Request, Response
from sqlalchemy.orm import Session

from masnaa.service.tenancy import Caller, ServiceError
from masnaa.service.tokens import authenticate, touch_token

SESSION_COOKIE = "masnaa_session"
PRE_SESSION_COOKIE = "masnaa_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"masnaa-portal-csrf-v1"


class SignInRequired(Exception):
    """The page needs a signed-in user; the portal answers with the sign-in page."""


class CsrfRejected(Exception):
    """A POST without the right CSRF token."""


class Authenticator(Protocol):
    """A way to sign in. ``credential`` is what the user handed over (a token
    today; an OIDC authorisation code later); returns the API token to keep
    in the session cookie, or raises ``ServiceError`` (``invalid-token``)."""

    def sign_in(self, session: Session, credential: str, now: float) -> tuple[str, Caller]: ...


class TokenSignIn:
    """Sign in by pasting an API token (``masnaa up`` prints the first one)."""

    def sign_in(self, session: Session, credential: str, now: float) -> tuple[str, Caller]:
        token = credential.strip()
        caller, _ = authenticate(session, token, now)
        return token, caller


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def resolve_caller(
    read: Session, token: str | None, now: float
) -> tuple[Caller | None, bool]:
    """The caller of a session token (``None`` when absent or no longer valid)
    and whether ``last_used_at`` should be rewritten."""
    if not token:
        return None, False
    try:
        return authenticate(read, token, now)
    except ServiceError:
        return None, False


def touch(write: Session, caller: Caller, now: float) -> None:
    touch_token(write, caller.token_id, now)


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=is_https(request), path="/"
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=is_https(request), path="/"
    )


# --- CSRF ------------------------------------------------------------------------


def _session_csrf(token: str) -> str:
    key = hashlib.sha256(token.encode("utf-8")).digest()
    return hmac.new(key, _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_token(request: Request, response_cookies: dict[str, str]) -> str:
    """The token the page's forms must send back. Before sign-in it is the
    double-submit cookie, created (into ``response_cookies``) when missing."""
    token = session_token(request)
    if token:
        return _session_csrf(token)
    pre = request.cookies.get(PRE_SESSION_COOKIE)
    if not pre or len(pre) > 128:
        pre = response_cookies.setdefault(PRE_SESSION_COOKIE, secrets.token_urlsafe(32))
    return pre


def set_pre_session(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        PRE_SESSION_COOKIE, value, httponly=True, samesite="strict", secure=is_https(request),
        path="/",
    )


def check_csrf(request: Request, sent: str | None) -> None:
    """Raise ``CsrfRejected`` unless ``sent`` is this browser's CSRF token."""
    token = session_token(request)
    expected = _session_csrf(token) if token else request.cookies.get(PRE_SESSION_COOKIE)
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfRejected
    # Defence in depth: a browser that names the page's origin must name ours.
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin != own:
            raise CsrfRejected
