"""Alembic environment: async engine, URL from Settings (or the caller's connection)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import db.audit  # noqa: F401  (its table on Base.metadata, for autogenerate)
from db.models import Base
from db.session import create_engine
from settings import get_settings

target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    url = context.config.attributes.get("database_url") or get_settings().database_url
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(run_with_connection)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "Offline migrations are not supported; point PROVISIO_DATABASE_URL at a server."
    )
asyncio.run(run_async())
