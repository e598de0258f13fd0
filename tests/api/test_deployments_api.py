"""Deployment endpoints: validation, conflicts, idempotency, ownership, pagination, detail."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.session import SessionMaker
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import wait_status


async def _counts(sessionmaker: SessionMaker) -> tuple[int, int, int]:
    async with sessionmaker() as session:
        return tuple(  # type: ignore[return-value]
            [
                await session.scalar(select(func.count()).select_from(table))
                for table in (Deployment, DiskAllocation, DeploymentHistory)
            ]
        )


async def _workflows_of(client: Client, username: str, expected: int) -> int:
    """How many workflows the visibility index lists for the user, read until it lists the
    `expected` number (the index lags the start) or the wait gives up."""

    async def count() -> int:
        return len([w async for w in client.list_workflows(f'Owner = "{username}"')])

    async def shown() -> bool:
        return await count() == expected

    with contextlib.suppress(AssertionError):
        await wait_for(shown, timeout_s=10)
    return await count()


BAD_INPUTS = [
    ({"deployment_name": ""}, ["body", "deployment_name"]),
    ({"deployment_name": "x" * 64}, ["body", "deployment_name"]),
    ({"deployment_name": "Has Spaces"}, ["body", "deployment_name"]),
    ({"deployment_name": "-leading"}, ["body", "deployment_name"]),
    ({"template_id": "one"}, ["body", "template_id"]),
    ({"template_id": 999999}, ["body", "template_id"]),
    ({"configuration": {"max_connections": "many"}}, ["body", "configuration", "max_connections"]),
    ({"configuration": {"unknown_key": 1}}, ["body", "configuration", "unknown_key"]),
    ({"configuration": {"provisio": 1}}, ["body", "configuration", "provisio"]),
    (
        {"disk_allocations": [{"mount_point": "/data/pgdata", "size_gb": -1}]},
        ["body", "disk_allocations", 0, "size_gb"],
    ),
    (
        {"disk_allocations": [{"mount_point": "/data/pgdata", "size_gb": 10**9}]},
        ["body", "disk_allocations", 0, "size_gb"],
    ),
    (
        {"disk_allocations": [{"mount_point": "/data/pgdata", "size_gb": "10"}]},
        ["body", "disk_allocations", 0, "size_gb"],
    ),
    (
        {"disk_allocations": [{"mount_point": "/data/pgdata", "filesystem_type": "btrfs"}]},
        ["body", "disk_allocations", 0, "filesystem_type"],
    ),
    (
        {"disk_allocations": [{"mount_point": "/elsewhere", "size_gb": 10}]},
        ["body", "disk_allocations", 0, "mount_point"],
    ),
    (
        {
            "disk_allocations": [
                {"mount_point": "/data/pgdata", "size_gb": 10},
                {"mount_point": "/data/pgdata", "size_gb": 11},
            ]
        },
        ["body", "disk_allocations", 1, "mount_point"],
    ),
    ({"status": "succeeded"}, ["body", "status"]),
    ({"user_id": 1}, ["body", "user_id"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_INPUTS)
async def test_bad_input_is_422_naming_the_field_and_leaves_nothing(
    change: dict[str, Any],
    loc: list[Any],
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one", **change}
    response = await api.post("/api/deployments", json=body, headers=operator.headers)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert await _counts(sessionmaker) == (0, 0, 0)
    assert await _workflows_of(client, operator.username, 0) == 0
    assert runner.triggers == []


async def test_inactive_template_is_rejected(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    template_id = await make_template(is_active=False)
    response = await api.post(
        "/api/deployments",
        json={"template_id": template_id, "deployment_name": "pg-one"},
        headers=operator.headers,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "template is not active"


async def test_duplicate_name_per_user_is_409_and_other_users_may_reuse_it(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    alice, bob = await make_user("operator"), await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    first = await api.post("/api/deployments", json=body, headers=alice.headers)
    assert first.status_code == 201
    again = await api.post("/api/deployments", json=body, headers=alice.headers)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    other = await api.post("/api/deployments", json=body, headers=bob.headers)
    assert other.status_code == 201
    assert (await _counts(sessionmaker))[0] == 2


async def test_same_idempotency_key_returns_the_same_deployment_and_starts_nothing_new(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    alice, bob = await make_user("operator"), await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    key = {"Idempotency-Key": "form-1234"}
    first = await api.post("/api/deployments", json=body, headers={**alice.headers, **key})
    second = await api.post("/api/deployments", json=body, headers={**alice.headers, **key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert await _workflows_of(client, alice.username, 1) == 1
    # The key is scoped to its user: bob's request with the same key is his own deployment.
    theirs = await api.post("/api/deployments", json=body, headers={**bob.headers, **key})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert (await _counts(sessionmaker))[0] == 2


async def test_a_key_reused_for_another_deployment_is_409_and_changes_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    alice = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    headers = {**alice.headers, "Idempotency-Key": "form-77"}
    first = await api.post("/api/deployments", json=body, headers=headers)
    assert first.status_code == 201
    # Counted once the workflow has written its provisioning rows (it then waits for the run):
    # counted earlier, its own rows landing meanwhile looked like the refused request's.
    await wait_status(api, alice, first.json()["id"], "queued")
    before = await _counts(sessionmaker)
    other = await api.post(
        "/api/deployments", json={**body, "deployment_name": "pg-two"}, headers=headers
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert await _counts(sessionmaker) == before
    assert await _workflows_of(client, alice.username, 1) == 1


async def test_one_key_sent_many_times_at_once_makes_one_deployment(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
) -> None:
    import asyncio

    alice = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    headers = {**alice.headers, "Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(api.post("/api/deployments", json=body, headers=headers) for _ in range(5))
    )
    assert [a.status_code for a in answers] == [201] * 5
    assert len({a.json()["id"] for a in answers}) == 1
    assert await _workflows_of(client, alice.username, 1) == 1


async def test_a_key_whose_earlier_request_failed_is_409_not_a_second_run(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    settings: Any,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """A run for this key already ended without recording a deployment: the key is spent."""
    from temporalio.client import WorkflowFailureError

    from api.launch import workflow_id_for
    from vocabulary.contracts import DeployRequest
    from vocabulary.disks import DiskOverride
    from workflows.deploy import DeployWorkflow

    alice = await make_user("operator")
    template_id = await make_template()
    refused = DeployRequest(
        deployment_id=999_999,  # recorded nowhere: the API's commit was lost
        user_id=alice.id,
        username=alice.username,
        template_id=template_id,
        deployment_name="pg-one",
        disk_overrides=[DiskOverride("/etc", size_gb=1)],
    )
    handle = await client.start_workflow(
        DeployWorkflow.run,
        refused,
        id=workflow_id_for(alice, "spent-key"),
        task_queue=settings.temporal_task_queue,
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    body = {"template_id": template_id, "deployment_name": "pg-one"}
    headers = {**alice.headers, "Idempotency-Key": "spent-key"}
    response = await api.post("/api/deployments", json=body, headers=headers)
    assert response.status_code == 409
    assert "new key" in response.json()["detail"]
    assert await _counts(sessionmaker) == (0, 0, 0)


async def test_the_201_is_what_a_get_then_returns(
    api: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    """The POST answers from what it wrote, without reading back: it must match the read."""
    alice = await make_user("operator")
    body = {
        "template_id": await make_template(),
        "deployment_name": "pg-one",
        "configuration": {"max_connections": 250},
        "disk_allocations": [{"mount_point": "/data/pgwal", "size_gb": 8}],
    }
    created = await api.post("/api/deployments", json=body, headers=alice.headers)
    assert created.status_code == 201
    # No worker polls this test's queue: the deployment stays as the POST left it.
    read = await api.get(f"/api/deployments/{created.json()['id']}", headers=alice.headers)
    assert read.json() == created.json()
    assert [d["size_gb"] for d in created.json()["disk_allocations"]] == [20, 8]


async def test_detail_has_the_seed_fields_and_a_temporal_link(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    created = await api.post(
        "/api/deployments",
        json={"template_id": template_id, "deployment_name": "pg-one"},
        headers=operator.headers,
    )
    deployment_id = created.json()["id"]

    async def with_disks() -> Any:
        r = await api.get(f"/api/deployments/{deployment_id}", headers=operator.headers)
        return r.json() if r.json()["disk_allocations"] else None

    from tests.conftest import wait_for

    detail = await wait_for(with_disks)
    assert detail["template_name"] == "postgres-small"
    assert detail["service_type"] == "postgresql"
    assert detail["username"] == operator.username
    assert [d["mount_point"] for d in detail["disk_allocations"]] == ["/data/pgdata", "/data/pgwal"]
    assert set(detail["disk_allocations"][0]) == {
        "disk_type",
        "size_gb",
        "mount_point",
        "volume_group",
        "logical_volume",
        "filesystem_type",
        "allocation_params",
        "state",
        "state_changed_at",
    }
    assert {d["state"] for d in detail["disk_allocations"]} == {"planned"}
    assert detail["temporal_url"].endswith(f"/namespaces/default/workflows/{detail['workflow_id']}")
    assert "password_hash" not in str(detail)


async def test_other_users_deployments_are_404_and_hidden_from_lists(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> None:
    owner, stranger = await make_user("operator"), await make_user("operator")
    admin, viewer = await make_user("admin"), await make_user("viewer")
    created = await api.post(
        "/api/deployments",
        json={"template_id": await make_template(), "deployment_name": "pg-one"},
        headers=owner.headers,
    )
    deployment_id = created.json()["id"]
    for path in (f"/api/deployments/{deployment_id}", f"/api/deployments/{deployment_id}/history"):
        assert (await api.get(path, headers=owner.headers)).status_code == 200
        assert (await api.get(path, headers=admin.headers)).status_code == 200
        assert (await api.get(path, headers=stranger.headers)).status_code == 404
        assert (await api.get(path, headers=viewer.headers)).status_code == 404
        assert (await api.get(path)).status_code == 401
    assert (await api.get("/api/deployments/987654", headers=owner.headers)).status_code == 404
    listed = (await api.get("/api/deployments", headers=stranger.headers)).json()
    assert listed == {"items": [], "next_cursor": None}
    assert len((await api.get("/api/deployments", headers=admin.headers)).json()["items"]) == 1


async def test_viewer_cannot_create_and_anonymous_is_401(
    api: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    viewer = await make_user("viewer")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    assert (
        await api.post("/api/deployments", json=body, headers=viewer.headers)
    ).status_code == 403
    assert (await api.post("/api/deployments", json=body)).status_code == 401
    forged = {"Authorization": "Bearer not-a-token"}
    assert (await api.post("/api/deployments", json=body, headers=forged)).status_code == 401


async def test_list_is_newest_first_filtered_and_paginated(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    first_template, second_template = await make_template(), await make_template("web-app")
    ids = []
    for index in range(5):
        template_id = first_template if index % 2 == 0 else second_template
        created = await api.post(
            "/api/deployments",
            json={"template_id": template_id, "deployment_name": f"dep-{index}"},
            headers=operator.headers,
        )
        ids.append(created.json()["id"])

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/deployments", params=params, headers=operator.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    filtered = await api.get(
        "/api/deployments", params={"template_id": second_template}, headers=operator.headers
    )
    assert [i["id"] for i in filtered.json()["items"]] == [ids[3], ids[1]]
    bad = await api.get("/api/deployments", params={"cursor": "bm9wZQ"}, headers=operator.headers)
    assert bad.status_code == 422
    bad_status = await api.get(
        "/api/deployments", params={"status": "exploded"}, headers=operator.headers
    )
    assert bad_status.status_code == 422
