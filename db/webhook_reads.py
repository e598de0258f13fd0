"""Where a deployment's events go: its owner's webhook URL and secret, read at send time."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, User


class Webhook(NamedTuple):
    url: str
    secret: str


async def owner_webhook(session: AsyncSession, deployment_id: int) -> Webhook | None:
    query = (
        select(User.webhook_url, User.webhook_secret)
        .join(Deployment, Deployment.user_id == User.id)
        .where(Deployment.id == deployment_id)
    )
    row = (await session.execute(query)).one_or_none()
    if row is None or row.webhook_url is None or row.webhook_secret is None:
        return None
    return Webhook(row.webhook_url, row.webhook_secret)


async def owner_has_webhook(session: AsyncSession, deployment_id: int) -> bool:
    """Whether the owner listens (one indexed lookup; the secret is not read)."""
    query = (
        select(User.id)
        .join(Deployment, Deployment.user_id == User.id)
        .where(Deployment.id == deployment_id, User.webhook_url.is_not(None))
    )
    return await session.scalar(query) is not None
