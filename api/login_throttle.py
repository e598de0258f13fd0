"""Throttling password guesses: per username and per client address, kept in PostgreSQL so
every API process sees the same counts. Checked before the (deliberately slow) hash."""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LoginFailure

WINDOW_S = 15 * 60
MAX_PER_USERNAME = 5
MAX_PER_CLIENT = 30


def _recent() -> ColumnElement[bool]:
    return LoginFailure.failed_at > func.now() - literal_column(f"interval '{WINDOW_S} seconds'")


async def is_throttled(session: AsyncSession, username: str, client: str) -> bool:
    per_user = await session.scalar(
        select(func.count()).where(LoginFailure.username == username, _recent())
    )
    per_client = await session.scalar(
        select(func.count()).where(LoginFailure.client == client, _recent())
    )
    return (per_user or 0) >= MAX_PER_USERNAME or (per_client or 0) >= MAX_PER_CLIENT


async def record_failure(session: AsyncSession, username: str, client: str) -> None:
    session.add(LoginFailure(username=username[:255], client=client[:64]))
    # Forget what is older than the window, for this username and client.
    await session.execute(
        delete(LoginFailure).where(
            or_(LoginFailure.username == username, LoginFailure.client == client),
            ~_recent(),
        )
    )


async def clear_failures(session: AsyncSession, username: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.username == username))
