"""record_step says whether anyone listens to an event: only for an event, and only when the
owner has a webhook URL or the service a global one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update
from temporalio.testing import ActivityEnvironment

from activities.deployment_activities import DeploymentActivities
from db.models import Deployment, DeploymentHistory, User
from db.session import SessionMaker
from vocabulary.contracts import RecordStepInput
from vocabulary.notifications import WebhookEventType
from vocabulary.statuses import DeploymentStatus as S


@pytest.fixture
async def owned(sessionmaker: SessionMaker, make_user: Any, make_template: Any) -> tuple[int, int]:
    """(owner id, deployment id) of a deployment whose owner has no webhook yet."""
    owner = await make_user("operator")
    template_id = await make_template()
    async with sessionmaker.begin() as session:
        row = Deployment(
            user_id=owner.id,
            template_id=template_id,
            deployment_name="pg-listened",
            workflow_id=f"deploy-{uuid.uuid4()}",
        )
        session.add(row)
        await session.flush()
        return owner.id, row.id


async def set_webhook(sessionmaker: SessionMaker, user_id: int, url: str | None) -> None:
    secret = None if url is None else "s" * 43
    async with sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.id == user_id).values(webhook_url=url, webhook_secret=secret)
        )


async def record(activities: DeploymentActivities, deployment_id: int, key: str, **kw: Any) -> bool:
    step = RecordStepInput(deployment_id, key, S.SUCCEEDED, "Deployment succeeded", **kw)
    return bool(await ActivityEnvironment().run(activities.record_step, step))


async def test_an_event_is_listened_to_when_the_owner_has_a_url(
    sessionmaker: SessionMaker, owned: tuple[int, int]
) -> None:
    owner_id, deployment_id = owned
    activities = DeploymentActivities(sessionmaker)
    event = WebhookEventType.STATUS_CHANGED
    assert await record(activities, deployment_id, "r1", notify=event) is False
    await set_webhook(sessionmaker, owner_id, "https://93.184.215.14/hooks")
    assert await record(activities, deployment_id, "r2", notify=event) is True
    # A step that is no event asks nobody, whoever listens.
    assert await record(activities, deployment_id, "r3") is False
    await set_webhook(sessionmaker, owner_id, None)
    assert await record(activities, deployment_id, "r4", notify=event) is False
    async with sessionmaker() as session:
        rows = await session.scalar(
            select(func.count()).where(DeploymentHistory.deployment_id == deployment_id)
        )
    assert rows == 4  # every step recorded, listened to or not


async def test_a_global_receiver_listens_to_every_event_and_to_nothing_else(
    sessionmaker: SessionMaker, owned: tuple[int, int]
) -> None:
    _, deployment_id = owned
    activities = DeploymentActivities(sessionmaker, global_webhook=True)
    notify = WebhookEventType.LEASE_WARNING
    assert await record(activities, deployment_id, "w1", notify=notify) is True
    assert await record(activities, deployment_id, "w2") is False
