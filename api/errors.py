"""One domain exception base, mapped to HTTP in one handler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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


class DatabaseUnavailable(DomainError):
    status_code = 503
    headers = {"Retry-After": "5"}


def _database_down(exc: Exception) -> bool:
    """A lost or refused database connection, as opposed to a bug in a statement. A refused
    connect escapes SQLAlchemy as the driver's own OSError (no socket, connection refused)."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, OSError)


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

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database restarting is a moment to wait, not a server error: clients that retry
        # (the callback plugin, the CLI) retry on 503 with Retry-After.
        if not _database_down(exc):
            raise exc
        down = DatabaseUnavailable(f"the database is unavailable, try again: {type(exc).__name__}")
        return await handle(request, down)

    app.add_exception_handler(DomainError, handle)
    app.add_exception_handler(DBAPIError, database_unavailable)
    app.add_exception_handler(OSError, database_unavailable)
    app.add_exception_handler(405, method_not_allowed)
