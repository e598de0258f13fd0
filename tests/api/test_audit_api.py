"""The audit trail for admin actions (users, templates), GET /api/audit (admins only, filters,
newest first, cursor pages) and the table's append-only trigger."""

from __future__ import annotations

import json
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.audit import deployment_snapshot
from db.audit import AuditEntry, record_audit, redacted
from db.models import User
from db.session import SessionMaker
from settings import Settings
from tests.api.test_admin_api import template
from tests.api.test_numeric_inputs import NOT_NUMBERS
from vocabulary.audit import AuditAction, AuditTarget

PROXIED = {"X-Forwarded-For": "198.51.100.23"}


async def entries(api: httpx.AsyncClient, admin: Any, **query: Any) -> list[dict[str, Any]]:
    response = await api.get("/api/audit", params=query, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def stored(sessionmaker: SessionMaker) -> list[AuditEntry]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_user_actions_leave_one_entry_each_with_actor_address_and_before_after(
    api: httpx.AsyncClient, make_user: Any, settings: Settings, sessionmaker: SessionMaker
) -> None:
    # The API behind a proxy on 127.0.0.1 (the test client's address): the client is the
    # address the proxy saw, as sign-in counts it.
    settings.trusted_proxies = [ip_network("127.0.0.1/32")]
    admin = await make_user("admin")
    headers = {**admin.headers, **PROXIED}
    created = await api.post(
        "/api/users",
        json={"username": "carol", "password": "a-long-password", "role": "viewer"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    carol = created.json()["id"]
    promoted = await api.patch(f"/api/users/{carol}", json={"role": "operator"}, headers=headers)
    assert promoted.status_code == 200
    disabled = await api.patch(f"/api/users/{carol}", json={"is_active": False}, headers=headers)
    assert disabled.status_code == 200

    rows = await entries(api, admin)
    assert [(r["action"], r["target"]) for r in rows] == [
        ("user.update", {"type": "user", "id": carol}),
        ("user.update", {"type": "user", "id": carol}),
        ("user.create", {"type": "user", "id": carol}),
    ]
    for row in rows:
        assert row["actor"] == {"id": admin.id, "username": admin.username, "role": "admin"}
        assert row["address"] == "198.51.100.23"
    create, promote, disable = reversed(rows)
    assert create["before"] is None
    assert create["after"]["username"] == "carol" and create["after"]["role"] == "viewer"
    assert (promote["before"]["role"], promote["after"]["role"]) == ("viewer", "operator")
    assert (disable["before"]["is_active"], disable["after"]["is_active"]) == (True, False)

    # Nothing of a password or its hash, anywhere in the table.
    async with sessionmaker() as session:
        password_hash = await session.scalar(select(User.password_hash).where(User.id == carol))
    assert password_hash
    raw = json.dumps([[e.before, e.after] for e in await stored(sessionmaker)])
    assert "a-long-password" not in raw and password_hash not in raw
    assert "password" not in raw


async def test_an_untrusted_peer_cannot_choose_its_address(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    admin = await make_user("admin")
    body = {"username": "dave", "password": "a-long-password", "role": "viewer"}
    response = await api.post("/api/users", json=body, headers={**admin.headers, **PROXIED})
    assert response.status_code == 201
    (row,) = await entries(api, admin)
    assert row["address"] == "127.0.0.1"  # the peer; its X-Forwarded-For is not believed


async def test_refused_admin_actions_leave_no_entry(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    admin = await make_user("admin")
    body = {"username": admin.username, "password": "a-long-password", "role": "viewer"}
    assert (await api.post("/api/users", json=body, headers=admin.headers)).status_code == 409
    last_admin = await api.patch(
        f"/api/users/{admin.id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert last_admin.status_code == 409
    assert (await api.patch("/api/users/9999", json={}, headers=admin.headers)).status_code == 404
    bad = template(disk={"mount_point": "/etc/x"})
    assert (await api.post("/api/templates", json=bad, headers=admin.headers)).status_code == 422
    missing = await api.post("/api/templates/9999/deactivate", headers=admin.headers)
    assert missing.status_code == 404
    assert await stored(sessionmaker) == []


async def test_template_actions_leave_one_entry_each(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    admin = await make_user("admin")
    first = await api.post("/api/templates", json=template(), headers=admin.headers)
    second = await api.post("/api/templates", json=template(), headers=admin.headers)
    assert first.status_code == second.status_code == 201
    v1, v2 = first.json()["id"], second.json()["id"]
    off = await api.post(f"/api/templates/{v1}/deactivate", headers=admin.headers)
    on = await api.post(f"/api/templates/{v1}/activate", headers=admin.headers)
    assert off.status_code == on.status_code == 200

    rows = await entries(api, admin, target_type="template")
    assert [(r["action"], r["target"]["id"]) for r in rows] == [
        ("template.activate", v1),
        ("template.deactivate", v1),
        ("template.create", v2),
        ("template.create", v1),
    ]
    activate, deactivate, create_v2, _ = rows
    assert create_v2["before"] is None
    assert create_v2["after"]["version"] == 2
    assert create_v2["after"]["configuration"] == {"max_connections": 100}
    assert create_v2["after"]["disk_allocations"][0]["mount_point"] == "/data/pg"
    assert (deactivate["before"]["is_active"], deactivate["after"]["is_active"]) == (True, False)
    assert (activate["before"]["is_active"], activate["after"]["is_active"]) == (False, True)
    assert activate["after"]["name"] == "pg" and activate["after"]["version"] == 1


async def test_only_admins_read_the_trail(api: httpx.AsyncClient, make_user: Any) -> None:
    for role in ("operator", "viewer"):
        account = await make_user(role)
        response = await api.get("/api/audit", headers=account.headers)
        assert response.status_code == 403, role
    assert (await api.get("/api/audit")).status_code == 401


async def test_filters_and_pages_newest_first(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    admin, other = await make_user("admin"), await make_user("admin")
    made = []
    for n, who in enumerate([admin, other, admin, other, admin]):
        body = {"username": f"user-{n}", "password": "a-long-password", "role": "viewer"}
        response = await api.post("/api/users", json=body, headers=who.headers)
        assert response.status_code == 201
        made.append(response.json()["id"])
    await api.patch(f"/api/users/{made[0]}", json={"role": "operator"}, headers=other.headers)

    everything = await entries(api, admin)
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    assert len(everything) == 6
    by_id = await entries(api, admin, actor_id=other.id)
    by_name = await entries(api, admin, actor=other.username)
    assert by_id == by_name and len(by_id) == 3
    assert {r["actor"]["id"] for r in by_id} == {other.id}
    updates = await entries(api, admin, action="user.update")
    assert [(r["target"]["id"], r["actor"]["id"]) for r in updates] == [(made[0], other.id)]
    about = await entries(api, admin, target_type="user", target_id=made[0])
    assert [r["action"] for r in about] == ["user.update", "user.create"]

    # since/until: the boundary entry's own time is in `since` and out of `until`.
    middle = everything[2]
    newer = await entries(api, admin, since=middle["at"])
    older = await entries(api, admin, until=middle["at"])
    assert [r["id"] for r in newer] == [r["id"] for r in everything[:3]]
    assert [r["id"] for r in older] == [r["id"] for r in everything[3:]]

    # Pages of two, by cursor and by the Link header, cover everything once, newest first.
    seen: list[int] = []
    url: str | None = "/api/audit?limit=2&target_type=user"
    pages = 0
    while url is not None:
        response = await api.get(url, headers=admin.headers)
        assert response.status_code == 200
        page = response.json()
        seen += [r["id"] for r in page["items"]]
        pages += 1
        link = response.headers.get("link")
        if page["next_cursor"] is None:
            assert link is None
            url = None
        else:
            assert link is not None and link.endswith('>; rel="next"')
            url = link[1 : link.index(">")]
            assert f"cursor={page['next_cursor']}" in url.replace("%3D", "=")
    assert seen == [r["id"] for r in everything] and pages == 3


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "١٠"},
        {"actor_id": "+1"},
        {"target_id": "9" * 30},
        {"cursor": "not-a-cursor"},
        {"action": "user.delete"},
        {"target_type": "host"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no time zone: which one?
        {"until": "9999-12-31T23:59:59-23:59"},  # past what UTC holds
        {"until": "0.5"},  # not seconds since 1970
        {"since": "1700000000"},
        {"actor": "ad\x00min"},
        {"limt": "5"},
    ],
)
async def test_bad_queries_are_422(
    query: dict[str, str], api: httpx.AsyncClient, make_user: Any
) -> None:
    admin = await make_user("admin")
    response = await api.get("/api/audit", params=query, headers=admin.headers)
    assert response.status_code == 422, response.text


async def test_the_table_refuses_update_delete_and_truncate(
    engine: AsyncEngine, sessionmaker: SessionMaker, make_user: Any
) -> None:
    admin = await make_user("admin")
    async with sessionmaker.begin() as session:
        actor = await session.get(User, admin.id)
        assert actor is not None
        await record_audit(
            session,
            actor=actor,
            address="192.0.2.1",
            action=AuditAction.USER_UPDATE,
            target_type=AuditTarget.USER,
            target_id=admin.id,
            before={"role": "admin"},
            after={"role": "admin"},
        )
    for statement in (
        "UPDATE audit_entries SET actor_username = 'someone-else'",
        "UPDATE audit_entries SET after = NULL",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    (entry,) = await stored(sessionmaker)
    assert (entry.actor_username, entry.after) == (admin.username, {"role": "admin"})


async def test_a_key_records_once_and_credentials_never_reach_the_table(
    sessionmaker: SessionMaker, make_user: Any
) -> None:
    admin = await make_user("admin")
    secret_laden = {
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$abc",
        "webhook_secret": "whsec-0123456789",
        "access_token": "eyJhbGciOi...",
        "nested": {"db_password": "hunter2", "api_token": "tok-123", "size_gb": 10},
    }
    ids = []
    for _ in range(2):
        async with sessionmaker.begin() as session:
            actor = await session.get(User, admin.id)
            assert actor is not None
            ids.append(
                await record_audit(
                    session,
                    actor=actor,
                    address="192.0.2.1",
                    action=AuditAction.DEPLOYMENT_CANCEL,
                    target_type=AuditTarget.DEPLOYMENT,
                    target_id=7,
                    before=None,
                    after=secret_laden,
                    key="deployment.cancel:7:u1:abc",
                )
            )
    assert ids[0] is not None and ids[1] is None
    (entry,) = await stored(sessionmaker)
    assert entry.after == {
        "nested": {"db_password": "********", "api_token": "********", "size_gb": 10}
    }
    assert redacted(secret_laden) == entry.after
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 1


async def test_a_quota_change_is_one_entry_with_the_old_and_new_limits(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    body = {"max_active_deployments": 3, "max_total_gb": 50}
    response = await api.patch(f"/api/users/{operator.id}", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text
    back = {"max_total_gb": None}
    response = await api.patch(f"/api/users/{operator.id}", json=back, headers=admin.headers)
    assert response.status_code == 200, response.text
    cleared, raised = await entries(api, admin, action="user.update", target_id=operator.id)
    assert (raised["before"]["max_active_deployments"], raised["before"]["max_total_gb"]) == (
        None,
        None,
    )
    assert (raised["after"]["max_active_deployments"], raised["after"]["max_total_gb"]) == (3, 50)
    assert (cleared["before"]["max_total_gb"], cleared["after"]["max_total_gb"]) == (50, None)
    assert cleared["after"]["max_active_deployments"] == 3


def test_a_deployment_snapshot_keeps_its_approval_when_it_has_one() -> None:
    detail: dict[str, Any] = {
        "deployment_name": "pg-one",
        "status": "awaiting_approval",
        "attempt": 1,
        "expires_at": None,
        "configuration": {"port": 5432},
        "disk_allocations": [{"mount_point": "/data", "size_gb": 10, "filesystem_type": "xfs"}],
        "approval": None,
    }
    assert "approval" not in deployment_snapshot(detail)
    decided = {"state": "approved", "by": "root", "at": "2026-12-02T05:00:00Z", "comment": "ok"}
    snapshot = deployment_snapshot({**detail, "approval": decided})
    assert snapshot["approval"] == decided
    assert snapshot["disks"] == {"/data": {"size_gb": 10, "filesystem_type": "xfs"}}


@pytest.mark.parametrize("name", ["actor_id", "target_id", "limit"])
async def test_numbers_are_ascii_digits_in_range(
    name: str, api: httpx.AsyncClient, make_user: Any
) -> None:
    admin = await make_user("admin")
    for value in [*NOT_NUMBERS, "0", str(2**63)]:
        response = await api.get("/api/audit", params={name: value}, headers=admin.headers)
        assert response.status_code == 422, (name, value, response.text)
    response = await api.get("/api/audit", params={name: "1"}, headers=admin.headers)
    assert response.status_code == 200
