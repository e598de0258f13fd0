"""A deployment's events reach its owner's webhook: the real API, PostgreSQL, Temporal server and
worker (the runner double), a receiver over real HTTP checking each signature. Each status move,
the lease's warning and its expiry arrive once by id; a receiver that never answers holds
nothing up; nobody listening starts no delivery at all."""

from __future__ import annotations

import json
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.webhook_receiver import NO_ANSWER, WebhookReceiverDouble, webhook_receiver
from tests.workflows.test_deploy_flow import wait_status
from tests.workflows.test_lease_time_skipping import leased_template
from tests.workflows.test_lifecycle import STATS, handle_of, operate, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow


async def listen(api: httpx.AsyncClient, account: Any, url: str) -> str:
    """The account's webhook set to `url`; its secret (shown this once)."""
    answer = await api.patch("/api/users/me", json={"webhook_url": url}, headers=account.headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["webhook_secret"])


def received(receiver: WebhookReceiverDouble) -> list[tuple[str, dict[str, Any]]]:
    """(type, body) of each event the receiver kept, in arrival order."""
    return [(kind, json.loads(body)) for kind, body in receiver.events.values()]


async def children_started(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    return sum(1 for event in history.events if event.event_type == started)


async def test_each_status_move_the_lease_warning_and_its_expiry_arrive_once_signed(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    settings.webhook_allow_private = True  # the receiver is on 127.0.0.1
    owner, admin = await make_user("operator"), await make_user("admin")
    template_id = await leased_template(api, admin, lease_s=8, lease_warnings_s=[4])
    async with webhook_receiver("") as receiver:
        receiver.secret = await listen(api, owner, receiver.url)
        done = await succeeded(api, client, owner, template_id)

        # The lease warns, then ends: the deployment is destroyed (its teardown run reported).
        await triggered(runner, 2)
        await handle_of(client, done).signal(
            DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
        )
        await wait_status(api, owner, done["id"], "destroyed")

        async def all_arrived() -> bool:
            return any(body["data"]["deployment"]["status"] == "destroyed"
                       for _, body in received(receiver))  # fmt: skip

        await wait_for(all_arrived)
    assert all(request.signed for request in receiver.requests)
    assert len(receiver.requests) == len(receiver.events)  # each answered 200, each sent once
    events = received(receiver)
    assert [(kind, body["data"]["deployment"]["status"]) for kind, body in events] == [
        ("deployment.status_changed", "queued"),
        ("deployment.status_changed", "succeeded"),
        ("deployment.lease_warning", "succeeded"),
        ("deployment.lease_expired", "destroying"),
        ("deployment.status_changed", "destroyed"),
    ]
    for kind, body in events:
        assert body["type"] == kind
        assert body["deployment_id"] == done["id"]
        assert body["id"].startswith(f"{done['id']}:")
    assert events[0][1]["data"]["deployment"]["previous_status"] == "provisioning"
    assert events[1][1]["data"]["deployment"]["previous_status"] == "queued"
    assert events[2][1]["data"]["message"].startswith("Lease ends in 4 s")
    assert events[3][1]["data"]["details"]["reason"] == "its lease expired"


async def test_a_receiver_that_never_answers_holds_the_deployment_up_not_at_all(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    settings.webhook_allow_private = True
    owner = await make_user("operator")
    async with webhook_receiver("", script=[NO_ANSWER] * 20) as receiver:
        receiver.secret = await listen(api, owner, receiver.url)
        done = await succeeded(api, client, owner, await make_template())
        assert (await operate(api, owner, done["id"], "destroy")).status_code == 202
        await triggered(runner, 2)
        await handle_of(client, done).signal(
            DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
        )
        # The deployment's workflow ends while every delivery still waits for an answer (each
        # POST is held until its 10 s timeout): it waited for none of them.
        await handle_of(client, done).result()
        await wait_status(api, owner, done["id"], "destroyed")
        assert receiver.requests, "no delivery was even tried"
        assert receiver.events == {}


async def test_nobody_listening_starts_no_delivery(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner = await make_user("operator")
    done = await succeeded(api, client, owner, await make_template())
    assert await children_started(client, done["workflow_id"]) == 0
