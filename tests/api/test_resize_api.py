"""PATCH /api/deployments/{id}: growing a deployment's disks over HTTP, with the real API,
PostgreSQL, Temporal server and worker (the runner double): who may, from which status, what the
template allows, and the same Idempotency-Key resizing once. A refusal changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.client import Client

from settings import Settings
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import create, history, wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow


async def bounded_template(api: httpx.AsyncClient, admin: Any) -> int:
    """/data/db: 10 GB, at most 50; /data/wal: 5 GB; 60 GB in all."""
    body = {
        "name": "bounded-db",
        "service_type": "postgresql",
        "configuration": {"listen": "localhost", "provisio": {"max_total_gb": 60}},
        "disk_allocations": [
            {
                "disk_type": "ssd",
                "size_gb": 10,
                "mount_point": "/data/db",
                "volume_group": "vg_data",
                "logical_volume": "lv_db",
                "filesystem_type": "ext4",
                "allocation_params": {"min_size_gb": 5, "max_size_gb": 50},
            },
            {
                "disk_type": "ssd",
                "size_gb": 5,
                "mount_point": "/data/wal",
                "volume_group": "vg_data",
                "logical_volume": "lv_wal",
                "filesystem_type": "ext4",
            },
        ],
    }
    response = await api.post("/api/templates", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def patch(
    api: httpx.AsyncClient,
    account: Any,
    deployment_id: int,
    *disks: tuple[str, int],
    **headers: str,
) -> httpx.Response:
    body = {"disk_allocations": [{"mount_point": m, "size_gb": s} for m, s in disks]}
    return await api.patch(
        f"/api/deployments/{deployment_id}", json=body, headers={**account.headers, **headers}
    )


def sizes(detail: dict[str, Any]) -> dict[str, int]:
    return {disk["mount_point"]: disk["size_gb"] for disk in detail["disk_allocations"]}


async def unchanged(api: httpx.AsyncClient, account: Any, done: dict[str, Any]) -> None:
    """Still succeeded with its sizes and its history as they were."""
    detail = (await api.get(f"/api/deployments/{done['id']}", headers=account.headers)).json()
    assert detail["status"] == "succeeded"
    assert sizes(detail) == sizes(done)
    rows = await history(api, account, done["id"])
    assert not [r for r in rows if "Resize" in r["message"]]


async def test_refusals_change_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    other, viewer = await make_user("operator"), await make_user("viewer")
    done = await succeeded(api, client, owner, await bounded_template(api, admin))
    assert done["resizable"] is True
    assert sizes(done) == {"/data/db": 10, "/data/wal": 5}

    shrink = await patch(api, owner, done["id"], ("/data/db", 20), ("/data/wal", 4))
    assert shrink.status_code == 422, shrink.text
    assert shrink.json()["detail"] == [
        {
            "loc": ["body", "disk_allocations", 1, "size_gb"],
            "msg": "the disk /data/wal is 5 GB; 4 GB would shrink it, and disks only grow",
            "type": "shrink",
        }
    ]
    over_bound = await patch(api, owner, done["id"], ("/data/db", 51))
    assert over_bound.status_code == 422, over_bound.text
    assert over_bound.json()["detail"][0]["loc"] == ["body", "disk_allocations", 0, "size_gb"]
    assert "50" in over_bound.json()["detail"][0]["msg"]
    over_cap = await patch(api, owner, done["id"], ("/data/db", 50), ("/data/wal", 11))
    assert over_cap.status_code == 422, over_cap.text
    assert over_cap.json()["detail"] == [
        {
            "loc": ["body", "disk_allocations"],
            "msg": "the disks add up to 61 GB; this template allows 60 GB in all",
            "type": "total",
        }
    ]
    unknown = await patch(api, owner, done["id"], ("/data/nope", 20))
    assert unknown.status_code == 422
    empty = await api.patch(
        f"/api/deployments/{done['id']}", json={"disk_allocations": []}, headers=owner.headers
    )
    assert empty.status_code == 422
    not_yours = await patch(api, other, done["id"], ("/data/db", 20))
    assert not_yours.status_code == 404
    viewing = await patch(api, viewer, done["id"], ("/data/db", 20))
    assert viewing.status_code == 403
    await unchanged(api, owner, done)
    assert len(runner.triggers) == 1


async def test_a_deployment_not_succeeded_is_refused_409(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
) -> None:
    owner = await make_user("operator")
    created = await create(api, owner, await make_template())
    queued = await wait_status(api, owner, created["id"], "queued")
    assert queued["resizable"] is False
    refused = await patch(api, owner, created["id"], ("/data/pgdata", 40))
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "detail": "the deployment is queued: only a succeeded deployment can be resized or "
        "reconfigured"
    }


async def test_a_resize_with_a_key_runs_once_and_settles_with_the_new_size(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await bounded_template(api, admin))

    first = await patch(api, owner, done["id"], ("/data/db", 30), **{"Idempotency-Key": "grow-1"})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "updating"
    assert first.json()["resizable"] is False
    again = await patch(api, owner, done["id"], ("/data/db", 30), **{"Idempotency-Key": "grow-1"})
    assert again.status_code == 202, again.text  # the same update: answered, not run twice
    other_key = await patch(api, owner, done["id"], ("/data/db", 40), **{"Idempotency-Key": "g2"})
    assert other_key.status_code == 409  # a second resize while the first one runs

    await triggered(runner, 2)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    grown = await wait_status(api, owner, done["id"], "succeeded")
    assert sizes(grown) == {"/data/db": 30, "/data/wal": 5}
    assert len(runner.triggers) == 2
    rows = await history(api, owner, done["id"])
    requested = [r for r in rows if r["message"].startswith("Resize requested")]
    assert [r["message"] for r in requested] == [
        f"Resize requested: /data/db 10→30 GB by {owner.username}"
    ]


async def test_an_xfs_disk_does_not_grow_where_images_are_not_mounted(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    """The directory backend without loop mounts cannot grow xfs (it grows only mounted): a 422
    naming the disk, not a run that fails and leaves the deployment failed."""
    settings.disk_backend, settings.directory_mount = "directory", False
    owner = await make_user("operator")
    done = await succeeded(api, client, owner, await make_template())  # /data/pgwal is xfs

    refused = await patch(api, owner, done["id"], ("/data/pgdata", 30), ("/data/pgwal", 8))
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == [
        {
            "loc": ["body", "disk_allocations", 1, "size_gb"],
            "msg": "the xfs filesystem of /data/pgwal grows only while mounted, and this "
            "service's directory backend does not mount its image files "
            "(PROVISIO_DIRECTORY_MOUNT is false)",
            "type": "unsupported",
        }
    ]
    await unchanged(api, owner, done)
    assert len(runner.triggers) == 1

    settings.directory_mount = True  # mounted, it grows online
    grown = await patch(api, owner, done["id"], ("/data/pgwal", 8))
    assert grown.status_code == 202, grown.text
