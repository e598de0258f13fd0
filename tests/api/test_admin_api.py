"""Admin endpoints: templates (create, versions, deactivate) and users (roles, disabling)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Template
from db.session import SessionMaker

DISK = {
    "disk_type": "ssd",
    "size_gb": 10,
    "mount_point": "/data/pg",
    "volume_group": "vg_data",
    "logical_volume": "lv_pg",
    "filesystem_type": "ext4",
}


def template(**change: Any) -> dict[str, Any]:
    disk = {**DISK, **change.pop("disk", {})}
    return {
        "name": "pg",
        "service_type": "postgresql",
        "configuration": {"max_connections": 100},
        "disk_allocations": [disk],
        **change,
    }


HOSTILE = [
    ({"disk": {"mount_point": "/data/../etc"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/etc/app"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/data"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/data2x/app"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "relative/path"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/data/a b"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/data/a\nb"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"mount_point": "/data/pg/"}}, ["disk_allocations", 0, "mount_point"]),
    ({"disk": {"volume_group": "-vg"}}, ["disk_allocations", 0, "volume_group"]),
    ({"disk": {"volume_group": ".."}}, ["disk_allocations", 0, "volume_group"]),
    ({"disk": {"volume_group": "vg;rm"}}, ["disk_allocations", 0, "volume_group"]),
    ({"disk": {"logical_volume": "snapshot"}}, ["disk_allocations", 0, "logical_volume"]),
    ({"disk": {"logical_volume": "lv_tmeta"}}, ["disk_allocations", 0, "logical_volume"]),
    ({"disk": {"logical_volume": "x" * 65}}, ["disk_allocations", 0, "logical_volume"]),
    ({"disk": {"filesystem_type": "btrfs"}}, ["disk_allocations", 0, "filesystem_type"]),
    ({"disk": {"size_gb": 0}}, ["disk_allocations", 0, "size_gb"]),
    ({"disk": {"size_gb": 10**7}}, ["disk_allocations", 0, "size_gb"]),
    ({"configuration": {"ansible_become": True}}, ["configuration", "ansible_become"]),
    (
        {"configuration": {"provisio": {"callback_timeout_s": -5}}},
        ["configuration", "provisio", "callback_timeout_s"],
    ),
    ({"name": "Bad Name"}, ["name"]),
    (
        {"configuration": {"provisio": {"overrides": {"x": {"type": "nope"}}}}},
        ["configuration", "provisio", "overrides", "x"],
    ),
    ({"configuration": {"provisio": {"retries": 3}}}, ["configuration", "provisio", "retries"]),
    (
        {"disk": {"size_gb": 50, "allocation_params": {"max_size_gb": 40}}},
        ["disk_allocations", 0, "size_gb"],
    ),
]


@pytest.mark.parametrize(("change", "loc"), HOSTILE)
async def test_hostile_templates_are_422_naming_the_field_and_leave_no_row(
    change: dict[str, Any],
    loc: list[Any],
    api: httpx.AsyncClient,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    admin = await make_user("admin")
    response = await api.post("/api/templates", json=template(**change), headers=admin.headers)
    assert response.status_code == 422, response.text
    assert ["body", *loc] in [e["loc"] for e in response.json()["detail"]]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Template)) == 0


async def test_templates_get_versions_and_deactivate(
    api: httpx.AsyncClient, worker: None, make_user: Any
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    assert (
        await api.post("/api/templates", json=template(), headers=operator.headers)
    ).status_code == 403
    first = await api.post("/api/templates", json=template(), headers=admin.headers)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["disk_allocations"][0]["size_gb"] == 10

    created = await api.post(
        "/api/deployments",
        json={"template_id": first.json()["id"], "deployment_name": "pg-one"},
        headers=operator.headers,
    )
    assert created.status_code == 201

    # A change is the next version; the deployment keeps pointing at the one it was made from.
    second = await api.post(
        "/api/templates", json=template(disk={"size_gb": 20}), headers=admin.headers
    )
    assert second.json()["version"] == 2
    again = await api.post("/api/templates", json=template(version=2), headers=admin.headers)
    assert again.status_code == 409
    detail = await api.get(f"/api/deployments/{created.json()['id']}", headers=operator.headers)
    assert detail.json()["template_version"] == 1

    off = await api.post(f"/api/templates/{first.json()['id']}/deactivate", headers=admin.headers)
    assert off.json()["is_active"] is False
    listed = await api.get("/api/templates", headers=operator.headers)
    assert [t["version"] for t in listed.json()] == [2]
    refused = await api.post(
        "/api/deployments",
        json={"template_id": first.json()["id"], "deployment_name": "pg-two"},
        headers=operator.headers,
    )
    assert refused.status_code == 422
    everything = await api.get(
        "/api/templates", params={"include_inactive": "true"}, headers=admin.headers
    )
    assert [t["version"] for t in everything.json()] == [1, 2]
    hidden = await api.get(
        "/api/templates", params={"include_inactive": "true"}, headers=operator.headers
    )
    assert hidden.status_code == 403
    on = await api.post(f"/api/templates/{first.json()['id']}/activate", headers=admin.headers)
    assert on.json()["is_active"] is True
    by_type = await api.get(
        "/api/templates", params={"service_type": "nginx"}, headers=operator.headers
    )
    assert by_type.json() == []


async def test_disabled_and_demoted_users_lose_access_at_once(
    api: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    viewer = await make_user("viewer")
    listed = await api.get("/api/users", headers=admin.headers)
    assert {u["username"] for u in listed.json()} >= {admin.username, operator.username}
    assert all("password" not in str(u) for u in listed.json())
    assert (await api.get("/api/users", headers=operator.headers)).status_code == 403

    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    demoted = await api.patch(
        f"/api/users/{operator.id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert demoted.json()["role"] == "viewer"
    assert (
        await api.post("/api/deployments", json=body, headers=operator.headers)
    ).status_code == 403

    disabled = await api.patch(
        f"/api/users/{viewer.id}", json={"is_active": False}, headers=admin.headers
    )
    assert disabled.json()["is_active"] is False
    assert (await api.get("/api/users/me", headers=viewer.headers)).status_code == 401
    login = await api.post(
        "/api/auth/token", data={"username": viewer.username, "password": viewer.password}
    )
    assert login.status_code == 401

    last = await api.patch(
        f"/api/users/{admin.id}", json={"role": "operator"}, headers=admin.headers
    )
    assert last.status_code == 409
    assert (
        await api.patch("/api/users/999999", json={"role": "viewer"}, headers=admin.headers)
    ).status_code == 404
    bad_role = await api.patch(
        f"/api/users/{viewer.id}", json={"role": "root"}, headers=admin.headers
    )
    assert bad_role.status_code == 422
