"""POST /api/deployments/{id}/lease and the "expiring within" list filter, over HTTP against the
real Temporal server and PostgreSQL (the runner is a double; the test sends the callback's
signals)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import history, wait_status
from tests.workflows.test_lease_time_skipping import leased_template
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow

HOUR, DAY = 3600, 86400


async def launch(api: httpx.AsyncClient, owner: Any, template_id: int, name: str) -> Any:
    body = {"template_id": template_id, "deployment_name": name}
    response = await api.post("/api/deployments", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def succeeded(
    api: httpx.AsyncClient, client: Client, owner: Any, template_id: int, name: str = "pg-one"
) -> Any:
    created = await launch(api, owner, template_id, name)
    await wait_status(api, owner, created["id"], "queued")
    handle = client.get_workflow_handle(created["workflow_id"])
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=1))
    return await wait_status(api, owner, created["id"], "succeeded")


async def extend(
    api: httpx.AsyncClient, account: Any, deployment_id: int, body: Any
) -> httpx.Response:
    return await api.post(
        f"/api/deployments/{deployment_id}/lease", json=body, headers=account.headers
    )


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_the_owner_and_an_admin_extend_a_lease_others_see_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    other, viewer = await make_user("operator"), await make_user("viewer")
    template_id = await leased_template(api, admin, lease_s=DAY, max_lease_s=3 * DAY)
    done = await succeeded(api, client, owner, template_id)
    expires = at(done["expires_at"])

    by_owner = await extend(api, owner, done["id"], {"extend_s": HOUR})
    assert by_owner.status_code == 200, by_owner.text
    assert at(by_owner.json()["expires_at"]) == expires + timedelta(hours=1)
    wanted = expires + timedelta(days=1)
    by_admin = await extend(api, admin, done["id"], {"expires_at": wanted.isoformat()})
    assert by_admin.status_code == 200, by_admin.text
    assert at(by_admin.json()["expires_at"]) == wanted

    assert (await extend(api, other, done["id"], {"extend_s": HOUR})).status_code == 404
    assert (await extend(api, viewer, done["id"], {"extend_s": HOUR})).status_code == 403
    assert (await extend(api, owner, 987_654, {"extend_s": HOUR})).status_code == 404

    rows = await history(api, owner, done["id"])
    extended = [r["message"] for r in rows if r["message"].startswith("Lease extended")]
    assert extended == [
        f"Lease extended to {(expires + timedelta(hours=1)).isoformat()} by {owner.username}",
        f"Lease extended to {wanted.isoformat()} by {admin.username}",
    ]
    detail = (await api.get(f"/api/deployments/{done['id']}", headers=owner.headers)).json()
    assert at(detail["expires_at"]) == wanted


async def test_an_idempotency_key_extends_once(
    api: httpx.AsyncClient, worker: None, client: Client, make_user: Any
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    template_id = await leased_template(api, admin, lease_s=DAY, max_lease_s=3 * DAY)
    done = await succeeded(api, client, owner, template_id)
    headers = {**owner.headers, "Idempotency-Key": "extend-1"}
    path = f"/api/deployments/{done['id']}/lease"
    first = await api.post(path, json={"extend_s": HOUR}, headers=headers)
    again = await api.post(path, json={"extend_s": HOUR}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert at(again.json()["expires_at"]) == at(done["expires_at"]) + timedelta(hours=1)


async def test_bad_bodies_are_refused_and_change_nothing(
    api: httpx.AsyncClient, worker: None, client: Client, make_user: Any
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    template_id = await leased_template(api, admin, lease_s=DAY, max_lease_s=2 * DAY)
    done = await succeeded(api, client, owner, template_id)
    expires = at(done["expires_at"])
    bad: list[Any] = [
        {},
        {"extend_s": HOUR, "expires_at": (expires + timedelta(hours=1)).isoformat()},
        {"extend_s": 0},
        {"extend_s": -5},
        {"extend_s": "3600"},
        {"extend_s": True},
        {"extend_s": HOUR, "reason": "more"},
        {"expires_at": "tomorrow"},
        {"expires_at": "2030-01-01T00:00:00"},  # no time zone: which midnight?
        {"expires_at": "0001-01-01T00:00:00+01:00"},  # before the first UTC moment
        {"expires_at": "9999-12-31T23:59:59-14:00"},  # after the last one
        {"expires_at": "9999-12-31T23:59:59Z"},  # past max_lease_s
        ["extend_s", HOUR],
    ]
    for body in bad:
        answer = await extend(api, owner, done["id"], body)
        assert answer.status_code == 422, (body, answer.text)
        assert isinstance(answer.json()["detail"], list), answer.text

    earlier = await extend(api, owner, done["id"], {"expires_at": expires.isoformat()})
    assert earlier.status_code == 422, earlier.text
    assert earlier.json()["detail"][0]["loc"] == ["body", "expires_at"]

    too_far = await extend(api, owner, done["id"], {"extend_s": 2 * DAY})
    assert too_far.status_code == 422, too_far.text
    [error] = too_far.json()["detail"]
    assert error["loc"] == ["body", "extend_s"]
    assert "max_lease_s" in error["msg"] and f"{2 * DAY}s from now" in error["msg"]

    detail = (await api.get(f"/api/deployments/{done['id']}", headers=owner.headers)).json()
    assert at(detail["expires_at"]) == expires
    rows = await history(api, owner, done["id"])
    assert not [r for r in rows if r["message"].startswith("Lease extended")]


async def test_no_lease_and_a_deployment_being_destroyed_or_gone_are_409(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    unleased = await succeeded(api, client, owner, await leased_template(api, admin), "pg-free")
    assert unleased["expires_at"] is None
    answer = await extend(api, owner, unleased["id"], {"extend_s": HOUR})
    assert answer.status_code == 409
    assert "no lease" in answer.json()["detail"]

    leased_id = await leased_template(api, admin, lease_s=DAY, max_lease_s=2 * DAY)
    done = await succeeded(api, client, owner, leased_id, "pg-leased")
    path = f"/api/deployments/{done['id']}/destroy"
    assert (await api.post(path, headers=owner.headers)).status_code == 202
    destroying = await extend(api, owner, done["id"], {"extend_s": HOUR})
    assert destroying.status_code == 409
    assert destroying.json()["detail"].startswith("the deployment is destroying")

    handle = client.get_workflow_handle(done["workflow_id"])
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
    destroyed = await wait_status(api, owner, done["id"], "destroyed")
    assert destroyed["expires_at"] is None
    gone = await extend(api, owner, done["id"], {"extend_s": HOUR})
    assert gone.status_code == 409
    assert gone.json()["detail"].startswith("the deployment is destroyed")


async def test_the_list_filters_leases_expiring_within(
    api: httpx.AsyncClient, worker: None, client: Client, make_user: Any
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    soon = await succeeded(
        api, client, owner, await leased_template(api, admin, lease_s=HOUR), "pg-soon"
    )
    later = await succeeded(
        api, client, owner, await leased_template(api, admin, lease_s=10 * DAY), "pg-later"
    )
    await succeeded(api, client, owner, await leased_template(api, admin), "pg-forever")

    async def within(seconds: int) -> list[int]:
        response = await api.get(
            "/api/deployments", params={"expiring_within_s": seconds}, headers=owner.headers
        )
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await within(2 * HOUR) == [soon["id"]]
    assert await within(30 * DAY) == [later["id"], soon["id"]]
    assert await within(0) == []
    everything = (await api.get("/api/deployments", headers=owner.headers)).json()["items"]
    assert len(everything) == 3
    for bad in ("-1", "soon", str(10**12)):
        response = await api.get(
            "/api/deployments", params={"expiring_within_s": bad}, headers=owner.headers
        )
        assert response.status_code == 422, (bad, response.text)
