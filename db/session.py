"""One engine and sessionmaker per process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(database_url: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(database_url, pool_pre_ping=True, **kwargs)  # type: ignore[arg-type]


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # expire_on_commit=False: objects stay readable after the edge commits.
    return async_sessionmaker(engine, expire_on_commit=False)
