"""WebhookDeliveryWorkflow on the real Temporal server, with receivers over real HTTP: signed
bodies, retries that keep the event's id, receivers given up, and addresses refused."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest
from sqlalchemy import select, update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from activities.webhook_activities import DELIVERY_TIMEOUT_S
from db.models import Deployment, User
from db.session import SessionMaker
from domain.webhook_signing import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from settings import Settings
from tests.conftest import HISTORIES
from tests.doubles import RecordingRunnerDouble
from tests.telemetry.metrics_runtime import metrics_runtime
from tests.telemetry.test_worker_metrics import find, samples
from tests.webhook_receiver import NO_ANSWER, webhook_receiver
from vocabulary.notifications import (
    WebhookEvent,
    WebhookEventType,
    webhook_event_id,
    webhook_workflow_id,
)
from vocabulary.webhook_deliveries import WebhookDeliveryResult, WebhookReceiver
from worker import build_worker
from workflows.webhook_delivery import DELIVERY_ATTEMPT_TIMEOUT, WebhookDeliveryWorkflow

OWNER_SECRET = "owner-webhook-secret-" + "o" * 32
GLOBAL_SECRET = "global-webhook-secret-" + "g" * 32
OWNER, GLOBAL = WebhookReceiver.OWNER, WebhookReceiver.GLOBAL
# Recorded deliveries that today's WebhookDeliveryWorkflow must replay (a delivery runs up to a
# day: a change that breaks it breaks deliveries in flight).
WEBHOOK_HISTORIES = HISTORIES.parent / "webhook_histories"


@pytest.fixture
async def deployment_id(sessionmaker: SessionMaker, make_user: Any, make_template: Any) -> int:
    owner = await make_user("operator")
    template_id = await make_template()
    async with sessionmaker.begin() as session:
        row = Deployment(
            user_id=owner.id,
            template_id=template_id,
            deployment_name="pg-hooked",
            workflow_id=f"deploy-{uuid.uuid4()}",
        )
        session.add(row)
        await session.flush()
        return row.id


async def set_owner_webhook(
    sessionmaker: SessionMaker, deployment_id: int, url: str, secret: str
) -> None:
    owner = select(Deployment.user_id).where(Deployment.id == deployment_id).scalar_subquery()
    async with sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.id == owner).values(webhook_url=url, webhook_secret=secret)
        )


@asynccontextmanager
async def delivering_worker(
    client: Client, settings: Settings, sessionmaker: SessionMaker, **webhooks: Any
) -> AsyncIterator[Settings]:
    """A worker whose settings have these webhook settings (receivers on 127.0.0.1 need
    webhook_allow_private unless a test says otherwise)."""
    served = settings.model_copy(update={"webhook_allow_private": True, **webhooks})
    with ThreadPoolExecutor(max_workers=2) as executor:
        async with build_worker(client, served, sessionmaker, RecordingRunnerDouble(), executor):
            yield served


def status_event(deployment_id: int, key: str = "result") -> WebhookEvent:
    return WebhookEvent(
        event_id=webhook_event_id(deployment_id, key),
        event_type=WebhookEventType.STATUS_CHANGED,
        deployment_id=deployment_id,
        occurred_at=datetime(2026, 12, 2, 4, 30, tzinfo=UTC),
        data={"status": "succeeded", "message": "Deployment succeeded"},
    )


async def deliver(
    client: Client, settings: Settings, event: WebhookEvent, record_as: str | None = None
) -> WebhookDeliveryResult:
    """The delivery's result; with PROVISIO_RECORD_HISTORIES=1, its history refreshes the replay
    test's fixture `record_as`."""
    handle = await client.start_workflow(
        WebhookDeliveryWorkflow.run,
        event,
        id=webhook_workflow_id(event.event_id) + f"-{uuid.uuid4().hex[:6]}",
        task_queue=settings.temporal_task_queue,
    )
    result = await handle.result()
    if record_as and os.environ.get("PROVISIO_RECORD_HISTORIES") == "1":
        WEBHOOK_HISTORIES.mkdir(exist_ok=True)
        history = await handle.fetch_history()
        (WEBHOOK_HISTORIES / f"{record_as}.json").write_text(history.to_json())
    return result


async def activities_scheduled(handle: WorkflowHandle[Any, Any]) -> list[str]:
    names = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return names


async def test_a_signed_event_reaches_the_owner_and_a_tampered_body_fails_the_check(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with (
        webhook_receiver(OWNER_SECRET) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        event = status_event(deployment_id)
        result = await deliver(client, settings, event)

    assert result == WebhookDeliveryResult(delivered=[OWNER], given_up=[])
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hooks/provisio" and request.signed
    assert request.headers[EVENT_HEADER.lower()] == "deployment.status_changed"
    assert request.headers[EVENT_ID_HEADER.lower()] == f"{deployment_id}:result"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "id": f"{deployment_id}:result",
        "type": "deployment.status_changed",
        "occurred_at": "2026-12-02T04:30:00+00:00",
        "deployment_id": deployment_id,
        "data": {"status": "succeeded", "message": "Deployment succeeded"},
    }
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("sha256=")
    now = time.time()
    assert verify(OWNER_SECRET, timestamp, signature, request.body, now)
    tampered = request.body.replace(b"succeeded", b"failed", 1)
    assert not verify(OWNER_SECRET, timestamp, signature, tampered, now)
    assert not verify("another-secret-" + "x" * 32, timestamp, signature, request.body, now)
    # A replay after the allowed skew is refused as well.
    assert not verify(OWNER_SECRET, timestamp, signature, request.body, now + 301)


@pytest.fixture
def localhost_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context with a self-signed certificate for `localhost` (and no IP address), which
    the worker's HTTPS client trusts for this test: its CA bundle is that certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(certifi, "where", lambda: str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https_goes_to_the_checked_address_and_still_verifies_the_host_name(
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    deployment_id: int,
    localhost_tls: ssl.SSLContext,
) -> None:
    """The POST connects to the address resolved and checked (127.0.0.1), while TLS names the
    URL's host: the certificate, for `localhost` only, is accepted; the Host header says it too."""
    async with (
        webhook_receiver(OWNER_SECRET, tls=localhost_tls) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        result = await deliver(client, settings, status_event(deployment_id))
    assert result == WebhookDeliveryResult(delivered=[OWNER], given_up=[])
    [request] = receiver.requests
    assert request.signed and request.headers["host"] == f"localhost:{receiver.port}"


async def test_a_receiver_with_another_secret_refuses_it_and_it_is_given_up(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with (
        webhook_receiver("the-receiver-holds-an-old-secret-" + "x" * 32) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        result = await deliver(client, settings, status_event(deployment_id))
    assert result == WebhookDeliveryResult(delivered=[], given_up=[OWNER])
    assert [r.signed for r in receiver.requests] == [False]
    assert receiver.events == {}


async def test_failures_are_retried_with_the_same_id_and_kept_once(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with (
        webhook_receiver(OWNER_SECRET, script=[500, 500, 200]) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        event = status_event(deployment_id, "lease_warning:86400")
        result = await deliver(client, settings, event, record_as="retried")

    assert result == WebhookDeliveryResult(delivered=[OWNER], given_up=[])
    assert len(receiver.requests) == 3
    ids = {r.headers[EVENT_ID_HEADER.lower()] for r in receiver.requests}
    assert ids == {f"{deployment_id}:lease_warning:86400"}
    assert all(r.signed for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1
    assert list(receiver.events) == [f"{deployment_id}:lease_warning:86400"]


async def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with (
        webhook_receiver(OWNER_SECRET, script=[NO_ANSWER, 200]) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        started = time.monotonic()
        result = await deliver(client, settings, status_event(deployment_id))
    assert result == WebhookDeliveryResult(delivered=[OWNER], given_up=[])
    assert len(receiver.requests) == 2 and list(receiver.events) == [f"{deployment_id}:result"]
    # The first attempt waited for the POST's own timeout, not for the activity's.
    assert DELIVERY_TIMEOUT_S <= time.monotonic() - started < DELIVERY_ATTEMPT_TIMEOUT.seconds


@pytest.mark.parametrize("status", [404, 400])
async def test_a_receiver_answering_4xx_is_given_up_after_one_attempt(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int, status: int
) -> None:
    async with (
        webhook_receiver(OWNER_SECRET, script=[status]) as receiver,
        delivering_worker(client, settings, sessionmaker),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, receiver.url, OWNER_SECRET)
        name = f"given_up_{status}"
        result = await deliver(client, settings, status_event(deployment_id), record_as=name)
    assert result == WebhookDeliveryResult(delivered=[], given_up=[OWNER])
    assert len(receiver.requests) == 1 and receiver.events == {}


async def test_the_owner_and_the_global_receiver_each_get_it(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with (
        webhook_receiver(OWNER_SECRET) as owner,
        webhook_receiver(GLOBAL_SECRET) as central,
    ):
        async with delivering_worker(
            client, settings, sessionmaker, webhook_url=central.url, webhook_secret=GLOBAL_SECRET
        ):
            await set_owner_webhook(sessionmaker, deployment_id, owner.url, OWNER_SECRET)
            event = status_event(deployment_id)
            result = await deliver(client, settings, event, record_as="owner_and_global")
    assert result == WebhookDeliveryResult(delivered=[OWNER, GLOBAL], given_up=[])
    # Each signed with its own receiver's secret.
    assert [r.signed for r in owner.requests] == [True]
    assert [r.signed for r in central.requests] == [True]
    assert list(owner.events) == list(central.events) == [f"{deployment_id}:result"]


async def test_nobody_listening_sends_nothing(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    async with delivering_worker(client, settings, sessionmaker):
        event = status_event(deployment_id)
        workflow_id = webhook_workflow_id(event.event_id)
        handle = await client.start_workflow(
            WebhookDeliveryWorkflow.run,
            event,
            id=workflow_id + f"-{uuid.uuid4().hex[:6]}",
            task_queue=settings.temporal_task_queue,
        )
        assert await handle.result() == WebhookDeliveryResult(delivered=[], given_up=[])
    assert await activities_scheduled(handle) == ["webhook_receivers"]


async def test_an_address_that_resolves_to_loopback_is_refused_without_a_request(
    client: Client, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    """The URL was accepted (say, while its name resolved elsewhere); at delivery `localhost`
    resolves to 127.0.0.1 and private addresses are not allowed: nothing is sent, and neither
    the URL nor the secret is in the workflow's history."""
    async with (
        webhook_receiver(OWNER_SECRET) as receiver,
        delivering_worker(client, settings, sessionmaker, webhook_allow_private=False),
    ):
        url = f"http://localhost:{receiver.port}/hooks/provisio"
        await set_owner_webhook(sessionmaker, deployment_id, url, OWNER_SECRET)
        event = status_event(deployment_id)
        handle = await client.start_workflow(
            WebhookDeliveryWorkflow.run,
            event,
            id=webhook_workflow_id(event.event_id) + f"-{uuid.uuid4().hex[:6]}",
            task_queue=settings.temporal_task_queue,
        )
        assert await handle.result() == WebhookDeliveryResult(delivered=[], given_up=[OWNER])
    assert receiver.requests == []
    history = (await handle.fetch_history()).to_json()
    assert "non-public address" in history
    assert f"localhost:{receiver.port}" not in history and OWNER_SECRET not in history


async def test_deliveries_are_counted_by_receiver_and_outcome(
    temporal_address: str, settings: Settings, sessionmaker: SessionMaker, deployment_id: int
) -> None:
    runtime, address = metrics_runtime(settings)
    client = await Client.connect(temporal_address, runtime=runtime)
    async with (
        webhook_receiver(OWNER_SECRET) as owner,
        webhook_receiver(GLOBAL_SECRET, script=[410]) as central,
        delivering_worker(
            client, settings, sessionmaker, webhook_url=central.url, webhook_secret=GLOBAL_SECRET
        ),
    ):
        await set_owner_webhook(sessionmaker, deployment_id, owner.url, OWNER_SECRET)
        result = await deliver(client, settings, status_event(deployment_id))
        assert result == WebhookDeliveryResult(delivered=[OWNER], given_up=[GLOBAL])
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{address}/metrics")).text
    found = samples(text)
    counted = "provisio_webhook_deliveries_total"
    assert find(found, counted, receiver="owner", outcome="delivered") == 1
    assert find(found, counted, receiver="global", outcome="given_up") == 1
    assert find(found, counted, receiver="owner", outcome="given_up") is None


async def test_recorded_deliveries_replay() -> None:
    files = sorted(WEBHOOK_HISTORIES.glob("*.json"))
    assert {"retried", "given_up_404", "owner_and_global"} <= {f.stem for f in files}
    replayer = Replayer(workflows=[WebhookDeliveryWorkflow])
    failures = {}
    for file in files:
        history = WorkflowHistory.from_json(file.stem, file.read_text())
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if replayed.replay_failure is not None:
            failures[file.stem] = str(replayed.replay_failure)
    assert failures == {}
