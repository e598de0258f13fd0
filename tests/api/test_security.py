"""Who may do what: a role × endpoint matrix against the live API, and tokens. Sign-in throttling
is attacked in test_login_hardening.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from db.models import Deployment, DeploymentHistory
from db.session import SessionMaker
from settings import Settings

ROLES = ("anonymous", "viewer", "operator", "admin")


async def _own_deployment(sessionmaker: SessionMaker, user_id: int, template_id: int) -> int:
    async with sessionmaker.begin() as session:
        deployment = Deployment(
            user_id=user_id,
            template_id=template_id,
            deployment_name=f"own-{uuid.uuid4().hex[:8]}",
            workflow_id=f"deployment-{uuid.uuid4()}",
        )
        session.add(deployment)
        await session.flush()
        session.add(
            DeploymentHistory(
                deployment_id=deployment.id,
                event_key="created",
                status="pending",
                message="Deployment created",
            )
        )
        return deployment.id


@pytest.fixture
async def world(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> dict[str, Any]:
    accounts = {role: await make_user(role) for role in ("viewer", "operator", "admin")}
    stranger = await make_user("operator")
    template_id = await make_template()
    own = {
        role: await _own_deployment(sessionmaker, account.id, template_id)
        for role, account in accounts.items()
    }
    return {
        "accounts": accounts,
        "template_id": template_id,
        "own": own,
        "others": await _own_deployment(sessionmaker, stranger.id, template_id),
        "stranger": stranger,
    }


def _expect(anonymous: int, viewer: int, operator: int, admin: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, viewer, operator, admin), strict=True))


# (method, path, body, expected status per caller). {own} is the caller's own deployment (the
# admin's for anonymous), {others} another user's, {template} an active template.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/api/health", None, _expect(200, 200, 200, 200)),
    ("GET", "/api/users/me", None, _expect(401, 200, 200, 200)),
    ("GET", "/api/users", None, _expect(401, 403, 403, 200)),
    ("POST", "/api/users", "new-user", _expect(401, 403, 403, 201)),
    ("PATCH", "/api/users/{stranger}", {"role": "operator"}, _expect(401, 403, 403, 200)),
    ("GET", "/api/templates", None, _expect(401, 200, 200, 200)),
    ("GET", "/api/templates/{template}", None, _expect(401, 200, 200, 200)),
    ("POST", "/api/templates", "new-template", _expect(401, 403, 403, 201)),
    ("POST", "/api/templates/{template}/activate", None, _expect(401, 403, 403, 200)),
    ("POST", "/api/deployments", "new-deployment", _expect(401, 403, 201, 201)),
    ("GET", "/api/deployments", None, _expect(401, 200, 200, 200)),
    ("GET", "/api/deployments/{own}", None, _expect(401, 200, 200, 200)),
    ("GET", "/api/deployments/{own}/history", None, _expect(401, 200, 200, 200)),
    ("GET", "/api/deployments/{others}", None, _expect(401, 404, 404, 200)),
    ("GET", "/api/deployments/{others}/history", None, _expect(401, 404, 404, 200)),
    ("POST", "/api/deployments/{others}/callback", {"events": []}, _expect(401, 401, 401, 401)),
]


def _body(kind: Any, world: dict[str, Any]) -> Any:
    unique = uuid.uuid4().hex[:8]
    if kind == "new-user":
        return {"username": f"u-{unique}", "password": "long-enough-pw", "role": "viewer"}
    if kind == "new-template":
        return {
            "name": f"t-{unique}",
            "service_type": "svc",
            "configuration": {},
            "disk_allocations": [],
        }
    if kind == "new-deployment":
        return {"template_id": world["template_id"], "deployment_name": f"d-{unique}"}
    return kind


async def test_role_endpoint_matrix(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    """Every cell: each caller on each endpoint gets exactly the expected status."""
    seen, wanted = {}, {}
    for method, path, body, expected in MATRIX:
        for role in ROLES:
            account = world["accounts"].get(role)
            url = path.format(
                own=world["own"][role if account else "admin"],
                others=world["others"],
                template=world["template_id"],
                stranger=world["stranger"].id,
            )
            headers = account.headers if account else {}
            response = await api.request(method, url, json=_body(body, world), headers=headers)
            assert "password_hash" not in response.text
            seen[(method, path, role)] = response.status_code
            wanted[(method, path, role)] = expected[role]
    assert seen == wanted


def _token(settings: Settings, user_id: int, **claims: Any) -> str:
    now = datetime.now(UTC)
    payload = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode(payload, settings.secret_key, algorithm="HS256")


async def test_expired_tampered_unsigned_and_foreign_tokens_are_401(
    api: httpx.AsyncClient, make_user: Any, settings: Settings
) -> None:
    admin = await make_user("admin")
    good = _token(settings, admin.id)
    assert (
        await api.get("/api/users/me", headers={"Authorization": f"Bearer {good}"})
    ).status_code == 200

    expired = _token(settings, admin.id, exp=datetime.now(UTC) - timedelta(seconds=1))
    header, payload, signature = good.split(".")
    other_payload = jwt.utils.base64url_encode(
        f'{{"sub": "{admin.id + 1}", "exp": 9999999999}}'.encode()
    ).decode()
    tampered = f"{header}.{other_payload}.{signature}"
    unsigned_header = jwt.utils.base64url_encode(b'{"alg": "none", "typ": "JWT"}').decode()
    alg_none = f"{unsigned_header}.{payload}."
    foreign = jwt.encode(
        {"sub": str(admin.id), "exp": datetime.now(UTC) + timedelta(minutes=5)},
        "another-secret-that-is-long-enough-0123456789",
        algorithm="HS256",
    )
    for token in (expired, tampered, alg_none, foreign, "", "a.b.c"):
        response = await api.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
