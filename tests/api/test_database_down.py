"""The database down under the API: every request answers 503 with Retry-After (clients retry
on it), never a 500, and the API serves again as soon as the database is back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.security import create_access_token
from settings import Settings
from tests.conftest import wait_for


@asynccontextmanager
async def _api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _answers(http: httpx.AsyncClient, settings: Settings) -> list[httpx.Response]:
    token = create_access_token(1, settings.secret_key, 5)  # valid: the user is looked up
    return [
        await http.post("/api/auth/token", data={"username": "admin", "password": "pw"}),
        await http.get("/api/deployments", headers={"Authorization": f"Bearer {token}"}),
        await http.post(
            "/api/deployments/1/callback?run=1",
            content=b"[]",
            # Well-formed and fresh: checking it needs the deployment's row.
            headers={
                "X-Provisio-Timestamp": str(int(time.time())),
                "X-Provisio-Signature": "sha256=" + "0" * 64,
            },
        ),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@/provisio?host=/nonexistent-socket-dir",  # no socket
        "postgresql+asyncpg://postgres@127.0.0.1:9/provisio",  # connection refused
    ],
)
async def test_no_database_to_reach_is_503(settings: Settings, url: str) -> None:
    async with _api(settings.model_copy(update={"database_url": url})) as http:
        for response in await _answers(http, settings):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            assert "database is unavailable" in response.json()["detail"]


async def _backends(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        return {int(pid) for (pid,) in rows}


async def test_connections_lost_under_a_running_api_are_503_then_served(
    settings: Settings, engine: AsyncEngine
) -> None:
    """As when the database restarts: the API's pooled connections are killed under it."""
    credentials = {"username": "nobody", "password": "pw"}
    before = await _backends(engine)
    async with _api(settings) as http:
        assert (await http.post("/api/auth/token", data=credentials)).status_code == 401
        api_backends = await _backends(engine) - before
        assert api_backends, "the API holds no pooled connection to kill"
        async with engine.connect() as connection:
            for pid in api_backends:
                await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        async def gone() -> bool:
            return not api_backends & await _backends(engine)

        await wait_for(gone)
        during = await http.post("/api/auth/token", data=credentials)
        assert during.status_code == 503, during.text
        assert during.headers["Retry-After"]
        # The broken pool was dropped: the next request gets a fresh connection.
        assert (await http.post("/api/auth/token", data=credentials)).status_code == 401
