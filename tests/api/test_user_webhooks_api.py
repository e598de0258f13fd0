"""PATCH /api/users/me: a user's own webhook URL, its secret shown once, and the URLs refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from db.models import User
from db.session import SessionMaker
from settings import Settings

# A public address given as such: no DNS needed to accept it.
PUBLIC_URL = "https://93.184.215.14/hooks/provisio"


@pytest.fixture
async def api_allowing_private(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API of a stack that allows receivers on private addresses (the dev stack's)."""
    app = create_app(settings.model_copy(update={"webhook_allow_private": True}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def stored(sessionmaker: SessionMaker, user_id: int) -> tuple[str | None, str | None]:
    async with sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user.webhook_url, user.webhook_secret


async def test_a_viewer_sets_rotates_and_removes_their_webhook(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    viewer = await make_user("viewer")
    me = await api.get("/api/users/me", headers=viewer.headers)
    assert me.status_code == 200 and me.json()["webhook_url"] is None

    response = await api.patch(
        "/api/users/me", json={"webhook_url": PUBLIC_URL}, headers=viewer.headers
    )
    assert response.status_code == 200, response.text
    first = response.json()["webhook_secret"]
    assert response.json()["webhook_url"] == PUBLIC_URL and len(first) >= 32
    assert await stored(sessionmaker, viewer.id) == (PUBLIC_URL, first)

    me = await api.get("/api/users/me", headers=viewer.headers)
    assert me.json()["webhook_url"] == PUBLIC_URL and "webhook_secret" not in me.json()

    # Nothing asked, nothing changed, and the secret is not shown again.
    same = await api.patch("/api/users/me", json={}, headers=viewer.headers)
    assert same.status_code == 200 and same.json()["webhook_secret"] is None
    assert same.json()["webhook_url"] == PUBLIC_URL

    rotated = await api.patch(
        "/api/users/me", json={"rotate_webhook_secret": True}, headers=viewer.headers
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["webhook_secret"]
    assert second and second != first and rotated.json()["webhook_url"] == PUBLIC_URL
    assert await stored(sessionmaker, viewer.id) == (PUBLIC_URL, second)

    # Setting a URL again makes a new secret too.
    again = await api.patch(
        "/api/users/me", json={"webhook_url": PUBLIC_URL + "/v2"}, headers=viewer.headers
    )
    third = again.json()["webhook_secret"]
    assert third not in (first, second)
    assert await stored(sessionmaker, viewer.id) == (PUBLIC_URL + "/v2", third)

    removed = await api.patch("/api/users/me", json={"webhook_url": None}, headers=viewer.headers)
    assert removed.status_code == 200
    assert removed.json()["webhook_url"] is None and removed.json()["webhook_secret"] is None
    assert await stored(sessionmaker, viewer.id) == (None, None)

    nothing = await api.patch(
        "/api/users/me", json={"rotate_webhook_secret": True}, headers=viewer.headers
    )
    assert nothing.status_code == 422
    assert nothing.json()["detail"][0]["loc"] == ["body", "rotate_webhook_secret"]
    both = await api.patch(
        "/api/users/me",
        json={"webhook_url": None, "rotate_webhook_secret": True},
        headers=viewer.headers,
    )
    assert both.status_code == 422


async def test_the_secret_is_in_no_other_answer(api: httpx.AsyncClient, make_user: Any) -> None:
    admin = await make_user("admin")
    operator = await make_user("operator")
    response = await api.patch(
        "/api/users/me", json={"webhook_url": PUBLIC_URL}, headers=operator.headers
    )
    secret = response.json()["webhook_secret"]
    answers = [
        await api.get("/api/users/me", headers=operator.headers),
        await api.get("/api/users", headers=admin.headers),
        await api.patch(
            f"/api/users/{operator.id}", json={"role": "viewer"}, headers=admin.headers
        ),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert secret not in answer.text and "webhook_secret" not in answer.text
    # An admin's listing does not show other users' URLs either.
    assert PUBLIC_URL not in answers[1].text


async def test_no_token_no_change(api: httpx.AsyncClient) -> None:
    response = await api.patch("/api/users/me", json={"webhook_url": PUBLIC_URL})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/hooks",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "93.184.215.14/hooks",
        "https://",
        "https:///path-only",
        "https://user:password@93.184.215.14/hooks",
        "https://token@93.184.215.14/hooks",
        "https://93.184.215.14:99999/hooks",
        "https://93.184.215.14/hooks with space",
        "https://exämple.com/hooks",
        "https://93.184.215.14/" + "a" * 2048,
        "",
        5,
    ],
)
async def test_a_malformed_url_is_a_422_naming_the_field(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker, url: Any
) -> None:
    user = await make_user("operator")
    response = await api.patch("/api/users/me", json={"webhook_url": url}, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "webhook_url"]
    assert await stored(sessionmaker, user.id) == (None, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hooks",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://[fd00::1]/hooks",
        "http://100.64.0.1/hooks",
    ],
)
async def test_a_non_public_address_is_refused_unless_allowed(
    api: httpx.AsyncClient,
    api_allowing_private: httpx.AsyncClient,
    make_user: Any,
    sessionmaker: SessionMaker,
    url: str,
) -> None:
    user = await make_user("operator")
    refused = await api.patch("/api/users/me", json={"webhook_url": url}, headers=user.headers)
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "webhook_url"] and "non-public" in problem["msg"]
    assert await stored(sessionmaker, user.id) == (None, None)

    allowed = await api_allowing_private.patch(
        "/api/users/me", json={"webhook_url": url}, headers=user.headers
    )
    assert allowed.status_code == 200, allowed.text
    assert await stored(sessionmaker, user.id) == (url, allowed.json()["webhook_secret"])


async def test_a_host_that_does_not_resolve_is_refused(
    api_allowing_private: httpx.AsyncClient, make_user: Any
) -> None:
    user = await make_user("operator")
    response = await api_allowing_private.patch(
        "/api/users/me",
        json={"webhook_url": "https://receiver.provisio.invalid/hooks"},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert "does not resolve" in response.json()["detail"][0]["msg"]
