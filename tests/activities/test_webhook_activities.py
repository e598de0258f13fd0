"""deliver_webhook's answer to each outcome of one attempt: delivered, tried again, or given up;
and what its errors say (the receiver and the outcome, never the URL: they are kept in history)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.webhook_activities import WebhookActivities
from db.models import Deployment, User
from db.session import SessionMaker
from settings import Settings
from tests.conftest import bound_socket
from tests.webhook_receiver import webhook_receiver
from vocabulary.notifications import WebhookEvent, WebhookEventType
from vocabulary.webhook_deliveries import (
    WEBHOOK_REFUSED,
    WEBHOOK_UNDELIVERED,
    WebhookDelivery,
    WebhookReceiver,
)

SECRET = "owner-webhook-secret-" + "o" * 32


@pytest.fixture
async def owned(sessionmaker: SessionMaker, make_user: Any, make_template: Any) -> tuple[int, int]:
    owner = await make_user("operator")
    template_id = await make_template()
    async with sessionmaker.begin() as session:
        row = Deployment(
            user_id=owner.id,
            template_id=template_id,
            deployment_name="pg-attempted",
            workflow_id=f"deploy-{uuid.uuid4()}",
        )
        session.add(row)
        await session.flush()
        return owner.id, row.id


async def set_webhook(sessionmaker: SessionMaker, user_id: int, url: str) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.id == user_id).values(webhook_url=url, webhook_secret=SECRET)
        )


async def attempt(
    settings: Settings, sessionmaker: SessionMaker, deployment_id: int, **webhooks: Any
) -> int:
    allowing = settings.model_copy(update={"webhook_allow_private": True, **webhooks})
    activities = WebhookActivities(sessionmaker, allowing)
    event = WebhookEvent(
        f"{deployment_id}:result",
        WebhookEventType.STATUS_CHANGED,
        deployment_id,
        datetime.now(UTC),
        {"status": "succeeded"},
    )
    delivery = WebhookDelivery(WebhookReceiver.OWNER, event)
    return int(await ActivityEnvironment().run(activities.deliver_webhook, delivery))


@pytest.mark.parametrize(
    ("status", "retried"),
    [(301, False), (400, False), (404, False), (410, False), (408, True), (429, True)]
    + [(500, True), (502, True), (503, True)],
)
async def test_an_answer_other_than_2xx_is_retried_or_given_up(
    settings: Settings,
    sessionmaker: SessionMaker,
    owned: tuple[int, int],
    status: int,
    retried: bool,
) -> None:
    owner_id, deployment_id = owned
    async with webhook_receiver(SECRET, script=[status]) as receiver:
        await set_webhook(sessionmaker, owner_id, receiver.url)
        with pytest.raises(ApplicationError) as failed:
            await attempt(settings, sessionmaker, deployment_id)
    assert failed.value.type == (WEBHOOK_UNDELIVERED if retried else WEBHOOK_REFUSED)
    assert failed.value.non_retryable is not retried
    assert f"owner receiver answered {status}" in failed.value.message
    assert str(receiver.port) not in failed.value.message
    assert len(receiver.requests) == 1


async def test_a_2xx_is_delivered(
    settings: Settings, sessionmaker: SessionMaker, owned: tuple[int, int]
) -> None:
    owner_id, deployment_id = owned
    async with webhook_receiver(SECRET, script=[204]) as receiver:
        await set_webhook(sessionmaker, owner_id, receiver.url)
        assert await attempt(settings, sessionmaker, deployment_id) == 204
    assert [r.signed for r in receiver.requests] == [True]


async def test_a_closed_port_or_an_unknown_host_is_tried_again(
    settings: Settings, sessionmaker: SessionMaker, owned: tuple[int, int]
) -> None:
    owner_id, deployment_id = owned
    with bound_socket() as closed:  # bound, not listening: the connection is refused
        port = closed.getsockname()[1]
        await set_webhook(sessionmaker, owner_id, f"http://127.0.0.1:{port}/hooks")
        with pytest.raises(ApplicationError) as refused:
            await attempt(settings, sessionmaker, deployment_id)
    assert refused.value.type == WEBHOOK_UNDELIVERED and not refused.value.non_retryable
    assert "could not be reached" in refused.value.message
    assert str(port) not in refused.value.message

    await set_webhook(sessionmaker, owner_id, "https://receiver.provisio.invalid/hooks")
    with pytest.raises(ApplicationError) as unknown:
        await attempt(settings, sessionmaker, deployment_id)
    assert unknown.value.type == WEBHOOK_UNDELIVERED and not unknown.value.non_retryable
    assert "does not resolve" in unknown.value.message
    assert "provisio.invalid" not in unknown.value.message


async def test_a_receiver_that_no_longer_listens_is_given_up(
    settings: Settings, sessionmaker: SessionMaker, owned: tuple[int, int]
) -> None:
    """The owner removed their URL between the event and the attempt."""
    _, deployment_id = owned
    with pytest.raises(ApplicationError) as gone:
        await attempt(settings, sessionmaker, deployment_id)
    assert gone.value.type == WEBHOOK_REFUSED and gone.value.non_retryable
    assert "no webhook URL any more" in gone.value.message
