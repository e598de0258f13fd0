from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.app import create_app
from settings import Settings


async def test_login_returns_a_bearer_token_and_me_never_shows_a_hash(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    operator = await make_user("operator")
    me = await api.get("/api/users/me", headers=operator.headers)
    assert me.status_code == 200
    # Who they are, their webhook's URL (never its secret) and their quota: never a hash.
    assert set(me.json()) == {"id", "username", "role", "created_at", "webhook_url", "quota"}
    assert me.json()["role"] == "operator"


async def test_wrong_password_and_unknown_user_are_the_same_401(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    operator = await make_user("operator")
    wrong = await api.post(
        "/api/auth/token", data={"username": operator.username, "password": "wrong-password"}
    )
    unknown = await api.post("/api/auth/token", data={"username": "ghost", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_admin_creates_users_operator_may_not(api: httpx.AsyncClient, make_user: Any) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    body = {"username": "new-viewer", "password": "a-long-password", "role": "viewer"}
    assert (await api.post("/api/users", json=body, headers=operator.headers)).status_code == 403
    created = await api.post("/api/users", json=body, headers=admin.headers)
    assert created.status_code == 201
    assert "password" not in created.text and "hash" not in created.text
    assert (await api.post("/api/users", json=body, headers=admin.headers)).status_code == 409
    login = await api.post(
        "/api/auth/token", data={"username": "new-viewer", "password": "a-long-password"}
    )
    assert login.status_code == 200


async def test_templates_list_active_ones_with_their_disks(
    api: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    viewer = await make_user("viewer")
    active = await make_template()
    inactive = await make_template("retired", is_active=False)
    listed = (await api.get("/api/templates", headers=viewer.headers)).json()
    assert [t["id"] for t in listed] == [active]
    assert len(listed[0]["disk_allocations"]) == 2
    assert (await api.get(f"/api/templates/{inactive}", headers=viewer.headers)).status_code == 200
    assert (await api.get("/api/templates/424242", headers=viewer.headers)).status_code == 404
    assert (await api.get("/api/templates")).status_code == 401


async def test_health_is_ok_with_real_database_and_temporal(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}


async def test_health_is_503_naming_the_database_when_it_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"}
    )
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/api/health")
    assert response.status_code == 503
    assert response.json()["database"].startswith("error")
    assert response.json()["temporal"] == "ok"


def test_a_short_secret_key_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        create_app(settings.model_copy(update={"secret_key": "short"}))


async def test_oversized_bodies_are_413_whether_declared_or_streamed(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    admin = await make_user("admin")
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    declared = await api.post(
        "/api/templates",
        content=huge,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert declared.status_code == 413

    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    streamed = await api.post(
        "/api/templates",
        content=chunks(),
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
