"""Quotas over HTTP with the real API, PostgreSQL and Temporal server: parallel launches never
pass a user's `max_active_deployments` or `max_total_gb`, a resize past `max_total_gb` sends
nothing to the workflow, destroy releases, an admin sets and clears a user's own limits, and a
launch that started nothing holds nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from db.models import Deployment, QuotaReservation
from db.session import SessionMaker
from settings import Settings
from tests.api.test_launch_outcomes import _api_with, _LosesTheAnswer
from tests.api.test_resize_api import bounded_template, patch, sizes
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import history, wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, operate, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from vocabulary.statuses import DeploymentStatus
from workflows.deploy import DeployWorkflow


async def set_quota(
    api: httpx.AsyncClient, admin: Any, account: Any, **limits: int | None
) -> dict[str, Any]:
    response = await api.patch(f"/api/users/{account.id}", json=limits, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def launch(
    api: httpx.AsyncClient, account: Any, template_id: int, name: str
) -> httpx.Response:
    body = {"template_id": template_id, "deployment_name": name}
    return await api.post("/api/deployments", json=body, headers=account.headers)


async def quota_of(api: httpx.AsyncClient, account: Any) -> dict[str, Any]:
    response = await api.get("/api/users/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["quota"]  # type: ignore[no-any-return]


async def reservations(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(QuotaReservation)) or 0)


async def deployments(sessionmaker: SessionMaker, user_id: int) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Deployment).where(Deployment.user_id == user_id)
        )
        return int(count or 0)


async def test_eight_parallel_launches_against_two_active_admit_exactly_two(
    api: httpx.AsyncClient, make_user: Any, make_template: Any, sessionmaker: SessionMaker
) -> None:
    admin, alice = await make_user("admin"), await make_user("operator")
    answer = await set_quota(api, admin, alice, max_active_deployments=2)
    assert answer["max_active_deployments"] == 2
    assert answer["quota"] == {
        "max_active_deployments": 2,
        "max_total_gb": 1000,  # the operator's default
        "active_deployments": 0,
        "total_gb": 0,
    }
    template_id = await make_template()
    answers = await asyncio.gather(*(launch(api, alice, template_id, f"pg-{n}") for n in range(8)))
    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(created) == 2, [a.text for a in answers]
    for refusal in refused:
        assert refusal.status_code == 422, refusal.text
        assert refusal.json()["detail"] == [
            {
                "loc": ["body"],
                "msg": "your quota max_active_deployments is 2: 2 in use, and 1 more would pass it",
                "type": "quota_exceeded",
                "ctx": {"quota": "max_active_deployments", "used": 2, "asked": 1, "limit": 2},
            }
        ]
    assert await deployments(sessionmaker, alice.id) == 2
    assert await reservations(sessionmaker) == 0  # each launch's went with its row
    assert await quota_of(api, alice) == {
        "max_active_deployments": 2,
        "max_total_gb": 1000,
        "active_deployments": 2,
        "total_gb": 50,
    }


async def test_eight_parallel_launches_never_pass_max_total_gb(
    api: httpx.AsyncClient, make_user: Any, make_template: Any, sessionmaker: SessionMaker
) -> None:
    admin, alice = await make_user("admin"), await make_user("operator")
    await set_quota(api, admin, alice, max_total_gb=60)
    template_id = await make_template()  # 20 + 5 GB each
    answers = await asyncio.gather(*(launch(api, alice, template_id, f"pg-{n}") for n in range(8)))
    assert sorted(a.status_code for a in answers) == [201, 201] + [422] * 6
    for answer in answers:
        if answer.status_code == 422:
            [error] = answer.json()["detail"]
            assert error["loc"] == ["body", "disk_allocations"]
            assert error["type"] == "quota_exceeded"
            assert error["ctx"] == {"quota": "max_total_gb", "used": 50, "asked": 25, "limit": 60}
            assert "60 GB" in error["msg"]
    assert await deployments(sessionmaker, alice.id) == 2
    assert (await quota_of(api, alice))["total_gb"] == 50


async def test_a_resize_past_max_total_gb_is_refused_and_sends_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    await set_quota(api, admin, owner, max_total_gb=30)
    done = await succeeded(api, client, owner, await bounded_template(api, admin))  # 10 + 5 GB

    refused = await patch(api, owner, done["id"], ("/data/db", 30))
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == [
        {
            "loc": ["body", "disk_allocations"],
            "msg": "the owner's quota max_total_gb is 30 GB: 15 GB in use, and 20 GB more "
            "would pass it",
            "type": "quota_exceeded",
            "ctx": {"quota": "max_total_gb", "used": 15, "asked": 20, "limit": 30},
        }
    ]
    # An admin (no limit of their own) resizing it meets the owner's quota too.
    by_admin = await patch(api, admin, done["id"], ("/data/db", 30))
    assert by_admin.status_code == 422, by_admin.text
    assert by_admin.json()["detail"][0]["ctx"]["used"] == 15
    detail = (await api.get(f"/api/deployments/{done['id']}", headers=owner.headers)).json()
    assert detail["status"] == "succeeded"
    assert sizes(detail) == {"/data/db": 10, "/data/wal": 5}
    assert not [r for r in await history(api, owner, done["id"]) if "Resize" in r["message"]]
    assert len(runner.triggers) == 1

    # Up to the limit passes; the growth counts at its new size while the run is in flight.
    grown = await patch(api, owner, done["id"], ("/data/db", 25))
    assert grown.status_code == 202, grown.text
    assert grown.json()["status"] == "updating"
    assert (await quota_of(api, owner))["total_gb"] == 30
    more = await launch(api, owner, await bounded_template(api, admin), "pg-two")
    assert more.status_code == 422, more.text
    assert more.json()["detail"][0]["ctx"] == {
        "quota": "max_total_gb",
        "used": 30,
        "asked": 15,
        "limit": 30,
    }
    await triggered(runner, 2)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    settled = await wait_status(api, owner, done["id"], "succeeded")
    assert sizes(settled) == {"/data/db": 25, "/data/wal": 5}
    assert (await quota_of(api, owner))["total_gb"] == 30


async def test_a_failed_resize_keeps_counting_its_new_sizes_until_destroyed(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    """The rows take a grown size only when a run made it, but a failed change's retry deploys
    the new sizes: they count from the request on, whatever the run did, until destroyed."""
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await bounded_template(api, admin))  # 10 + 5 GB
    assert (await patch(api, owner, done["id"], ("/data/db", 40))).status_code == 202
    await triggered(runner, 2)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {"web-1": {"failures": 1}}, "lvextend failed", run=2),
    )
    failed = await wait_status(api, owner, done["id"], "failed")
    assert sizes(failed) == {"/data/db": 10, "/data/wal": 5}  # as the rows say
    assert (await quota_of(api, owner))["total_gb"] == 45
    await set_quota(api, admin, owner, max_total_gb=50)
    more = await launch(api, owner, await bounded_template(api, admin), "pg-two")
    assert more.status_code == 422, more.text
    assert more.json()["detail"][0]["ctx"]["used"] == 45

    assert (await operate(api, owner, done["id"], "destroy")).status_code == 202
    await triggered(runner, 3)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=3)
    )
    await wait_status(api, owner, done["id"], "destroyed")
    assert (await quota_of(api, owner))["total_gb"] == 0


async def test_destroy_releases_the_quota(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    await set_quota(api, admin, owner, max_active_deployments=1)
    template_id = await make_template()
    done = await succeeded(api, client, owner, template_id)
    second = await launch(api, owner, template_id, "pg-two")
    assert second.status_code == 422, second.text
    assert second.json()["detail"][0]["ctx"]["quota"] == "max_active_deployments"

    assert (await operate(api, owner, done["id"], "destroy")).status_code == 202
    destroying = await quota_of(api, owner)
    assert destroying["active_deployments"] == 1  # its disks are still there
    await triggered(runner, 2)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    await wait_status(api, owner, done["id"], "destroyed")
    assert await quota_of(api, owner) == {
        "max_active_deployments": 1,
        "max_total_gb": 1000,
        "active_deployments": 0,
        "total_gb": 0,
    }
    again = await launch(api, owner, template_id, "pg-two")
    assert again.status_code == 201, again.text


async def test_an_admin_raises_a_quota_and_null_returns_to_the_role_default(
    api: httpx.AsyncClient, make_user: Any, make_template: Any, settings: Settings
) -> None:
    settings.quota_operator_max_active_deployments = 1  # the role's default
    admin, alice = await make_user("admin"), await make_user("operator")
    template_id = await make_template()
    assert (await launch(api, alice, template_id, "pg-one")).status_code == 201
    refused = await launch(api, alice, template_id, "pg-two")
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["ctx"] == {
        "quota": "max_active_deployments",
        "used": 1,
        "asked": 1,
        "limit": 1,
    }

    raised = await set_quota(api, admin, alice, max_active_deployments=3)
    assert (raised["max_active_deployments"], raised["quota"]["max_active_deployments"]) == (3, 3)
    assert (await launch(api, alice, template_id, "pg-two")).status_code == 201

    listed = (await api.get("/api/users", headers=admin.headers)).json()
    [row] = [user for user in listed if user["id"] == alice.id]
    assert row["max_active_deployments"] == 3
    assert row["quota"]["active_deployments"] == 2
    [admin_row] = [user for user in listed if user["id"] == admin.id]
    assert admin_row["quota"]["max_active_deployments"] is None  # admins: no limit

    # Absent leaves a limit alone; null returns it to the role's default.
    kept = await set_quota(api, admin, alice, max_total_gb=100)
    assert (kept["max_active_deployments"], kept["max_total_gb"]) == (3, 100)
    cleared = await set_quota(api, admin, alice, max_active_deployments=None)
    assert cleared["max_active_deployments"] is None
    assert cleared["max_total_gb"] == 100
    assert cleared["quota"]["max_active_deployments"] == 1
    assert (await launch(api, alice, template_id, "pg-three")).status_code == 422


async def test_only_admins_set_quotas_and_limits_are_whole_numbers(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    admin, alice = await make_user("admin"), await make_user("operator")
    viewer = await make_user("viewer")
    for account in (alice, viewer):
        mine = await api.patch(
            f"/api/users/{account.id}", json={"max_total_gb": 10**6}, headers=account.headers
        )
        assert mine.status_code == 403, mine.text
    for bad in (-1, 2**31, "5", 1.5):
        answer = await api.patch(
            f"/api/users/{alice.id}", json={"max_total_gb": bad}, headers=admin.headers
        )
        assert answer.status_code == 422, (bad, answer.text)
    assert (await quota_of(api, alice))["max_total_gb"] == 1000
    assert (await quota_of(api, viewer)) == {
        "max_active_deployments": 0,
        "max_total_gb": 0,
        "active_deployments": 0,
        "total_gb": 0,
    }


class _RefusesTheStart:
    """A workflow service that refuses every start outright: nothing was started."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("namespace not found", RPCStatusCode.NOT_FOUND, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _NeverAnswers(_RefusesTheStart):
    """The start's outcome unknown (and in truth nothing started)."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")


async def test_a_refused_start_leaves_no_reservation(
    settings: Settings,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    alice = await make_user("operator")
    template_id = await make_template()
    async for http in _api_with(settings, _RefusesTheStart(client)):
        answer = await launch(http, alice, template_id, "pg-one")
        assert answer.status_code == 503, answer.text
        assert "nothing was created" in answer.json()["detail"]
        assert (await quota_of(http, alice))["active_deployments"] == 0
    assert await reservations(sessionmaker) == 0


async def test_an_unknown_start_holds_its_reservation_until_it_expires(
    settings: Settings,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    settings.quota_operator_max_active_deployments = 1
    alice = await make_user("operator")
    template_id = await make_template()
    async for http in _api_with(settings, _NeverAnswers(client)):
        answer = await launch(http, alice, template_id, "pg-one")
        assert answer.status_code == 503, answer.text
        assert "unknown" in answer.json()["detail"]
        # It may yet appear: it holds its place.
        assert await quota_of(http, alice) == {
            "max_active_deployments": 1,
            "max_total_gb": 1000,
            "active_deployments": 1,
            "total_gb": 25,
        }
        assert (await launch(http, alice, template_id, "pg-two")).status_code == 422
    async with sessionmaker.begin() as session:  # its time passes
        await session.execute(
            update(QuotaReservation).values(expires_at=text("now() - interval '1 second'"))
        )
    async for http in _api_with(settings, client):
        assert (await quota_of(http, alice))["active_deployments"] == 0
        assert (await launch(http, alice, template_id, "pg-two")).status_code == 201
    assert await reservations(sessionmaker) == 0  # the expired one pruned, the new one recorded


async def test_a_start_the_workflow_recorded_itself_counts_once(
    settings: Settings,
    client: Client,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """The start landed but its answer was lost (503 unknown): the workflow's own first step
    writes the row, and the reservation stops counting the moment it does."""
    settings.quota_operator_max_active_deployments = 2
    alice = await make_user("operator")
    template_id = await make_template()
    async for http in _api_with(settings, _LosesTheAnswer(client)):
        lost = await launch(http, alice, template_id, "pg-one")
        assert lost.status_code == 503, lost.text

        async def recorded() -> bool:
            return await deployments(sessionmaker, alice.id) == 1

        await wait_for(recorded)
        assert (await quota_of(http, alice))["active_deployments"] == 1
        assert (await launch(http, alice, template_id, "pg-two")).status_code == 201
        assert (await launch(http, alice, template_id, "pg-three")).status_code == 422
    assert await reservations(sessionmaker) == 0  # pruned by the checks since


@pytest.mark.parametrize("status", list(DeploymentStatus))
async def test_only_cancelled_destroyed_and_rejected_release(
    status: DeploymentStatus,
    api: httpx.AsyncClient,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """The workflow moves the status; the quota follows it with nothing to release: awaiting
    approval, failed and timed out hold their place and disks, the terminal statuses none."""
    alice = await make_user("operator")
    created = await launch(api, alice, await make_template(), "pg-one")
    assert created.status_code == 201, created.text
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Deployment).where(Deployment.id == created.json()["id"]).values(status=status)
        )
    held = (0, 0) if status.is_terminal else (1, 25)
    quota = await quota_of(api, alice)
    assert (quota["active_deployments"], quota["total_gb"]) == held


async def test_a_keyed_retry_at_the_limit_replaces_its_own_reservation(
    settings: Settings,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """The start's outcome was unknown, so its reservation holds the user's one place; the
    retry with the same Idempotency-Key names the same workflow and must not be refused for
    the place it holds itself."""
    settings.quota_operator_max_active_deployments = 1
    alice = await make_user("operator")
    template_id = await make_template()
    body = {"template_id": template_id, "deployment_name": "pg-one"}
    headers = {**alice.headers, "Idempotency-Key": f"launch-{uuid.uuid4()}"}
    async for http in _api_with(settings, _NeverAnswers(client)):
        lost = await http.post("/api/deployments", json=body, headers=headers)
        assert lost.status_code == 503, lost.text
        other = await launch(http, alice, template_id, "pg-two")
        assert other.status_code == 422, other.text  # the place is held
    async for http in _api_with(settings, client):
        retried = await http.post("/api/deployments", json=body, headers=headers)
        assert retried.status_code == 201, retried.text
        assert (await quota_of(http, alice))["active_deployments"] == 1
    assert await deployments(sessionmaker, alice.id) == 1


def test_role_defaults_read_unlimited_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVISIO_QUOTA_OPERATOR_MAX_TOTAL_GB", "unlimited")
    monkeypatch.setenv("PROVISIO_QUOTA_ADMIN_MAX_ACTIVE_DEPLOYMENTS", "50")
    monkeypatch.setenv("PROVISIO_QUOTA_VIEWER_MAX_TOTAL_GB", "")
    settings = Settings()
    assert settings.role_quota("operator") == (10, None)
    assert settings.role_quota("admin") == (50, None)
    assert settings.role_quota("viewer") == (0, None)
    monkeypatch.setenv("PROVISIO_QUOTA_OPERATOR_MAX_TOTAL_GB", "-1")
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings()
