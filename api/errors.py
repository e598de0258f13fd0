"""One domain exception base, mapped to HTTP in one handler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match


class DomainError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


class NotAuthenticated(DomainError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class ValidationFailed(DomainError):
    """Field-level errors in FastAPI's shape: [{"loc": [...], "msg": ..., "type": ...}]."""

    status_code = 422


class TemporalUnavailable(DomainError):
    status_code = 503
    headers = {"Retry-After": "5"}


def install_error_handler(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        """Starlette's 405 names the methods of the first route on the path only; a path served
        by several routes (GET and POST /api/deployments) must list them all."""
        allowed: set[str] = set()
        for route in request.app.router.routes:
            match, _ = route.matches({**request.scope, "method": "\0"})
            if match is Match.PARTIAL:
                allowed |= set(getattr(route, "methods", None) or ())
        headers = {"Allow": ", ".join(sorted(allowed))}
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)

    app.add_exception_handler(DomainError, handle)
    app.add_exception_handler(405, method_not_allowed)
