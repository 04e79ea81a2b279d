"""One JSON shape for every error: ``{"error": {"code", "message", "field"}}``.

``code`` is stable and machine-readable; ``message`` is a sentence saying what
was wrong and what would be right; ``field`` names the offending request
field when there is one. Validation errors are 422 ``invalid-request``, an
oversize body is 413 ``body-too-large``, a bad token 401 ``invalid-token``,
another tenant's object 404 ``<kind>-not-found``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from masnaa.service.tenancy import ServiceError
from masnaa.store.db import DatabaseFileGone

log = logging.getLogger("masnaa.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Any = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}},
        status_code=status,
        headers=headers,
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "The request is well-formed but not acceptable (see the code).",
        401: "Missing, unknown, expired or revoked token.",
        403: "The caller's role may not do this.",
        404: "No such object visible to the caller.",
        409: "Conflicts with the object's current state.",
        413: "The request body is too large.",
        422: "The request does not match the schema.",
    }.items()
}

_STATUS_CODES = {
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def _location(loc: tuple[Any, ...]) -> str:
    # Pydantic ends the location of a mapping key it refused with "[key]"; the key
    # itself names the field well enough (an empty key leaves the mapping's name).
    parts = [
        str(p) for p in loc if p not in ("body", "query", "path", "header", "[key]", "")
    ]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "the request does not match the API schema", None
    first = errors[0]
    where = _location(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "the body is not valid JSON: send a JSON object", None
    if kind == "extra_forbidden":
        message = f"unknown field {where!r}: check its spelling against the API schema"
    elif kind == "missing":
        message = f"field {where!r} is required"
    else:
        message = f"{where or 'body'}: {first.get('msg', 'invalid')}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return message, where or None


_UNPARSABLE = "There was an error parsing the body"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the path, as the OpenAPI document lists them.

    Where several documented paths match, the one with the fewest parameters is the
    path's own (``POST /jobs/batch``, not ``GET /jobs/{job_id}`` with the id "batch").
    A path the document leaves out (the portal's) is probed route by route: FastAPI
    may wrap included routers in objects that list no methods of their own.
    """
    path = request.scope.get("path", "")
    documented = [
        (template.count("{"), methods)
        for template, pattern, methods in _documented_paths(request.app)
        if pattern.fullmatch(path)
    ]
    if documented:
        return sorted(min(documented, key=lambda found: found[0])[1])
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _documented_paths(app: FastAPI) -> list[tuple[str, re.Pattern[str], set[str]]]:
    found: list[tuple[str, re.Pattern[str], set[str]]] | None = getattr(
        app.state, "documented_paths", None
    )
    if found is None:
        found = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
            methods = {m.upper() for m in operations if m.upper() in _METHODS}
            found.append((template, pattern, methods))
        app.state.documented_paths = found
    return found


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_message(exc)
        return error_response(422, "invalid-request", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http-{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and detail == _UNPARSABLE:
            # FastAPI's answer when the JSON parser itself gives up (nesting too deep
            # for it): the same code as any other body that is not valid JSON.
            return error_response(
                422,
                "invalid-request",
                "the body could not be parsed as JSON: send a JSON object nested at most "
                "a few levels deep, as /api/v1/openapi.json describes",
            )
        if exc.status_code == 404:
            detail = "no such endpoint: see /api/v1/openapi.json"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here: use {' or '.join(allowed)}"
        return error_response(exc.status_code, code, detail, headers=headers or None)

    @app.exception_handler(StaleDataError)
    async def _stale(_: Request, exc: StaleDataError) -> JSONResponse:
        return error_response(
            409, "conflict", "the object changed while this request ran: retry it"
        )

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(
            500, "internal-error", "the server failed on this request; it was logged"
        )

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        return error_response(
            400, "invalid-value",
            "a value in the request cannot be stored or compared (a NUL character, or a "
            "number out of range): send printable text and numbers of sensible size",
        )

    @app.exception_handler(DatabaseFileGone)
    async def _gone(_: Request, exc: DatabaseFileGone) -> JSONResponse:
        log.error("%s", exc)
        return error_response(503, "database-unavailable", str(exc))

    @app.exception_handler(OperationalError)
    async def _db(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database error: %s", exc)
        return error_response(
            503, "database-unavailable", "the database is busy or unreachable: retry shortly",
            headers={"Retry-After": "1"},
        )
