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
    # No pool_pre_ping: with asyncpg it costs three round trips per checkout. A connection
    # that died with the server fails its first statement instead; SQLAlchemy then drops the
    # whole pool, and activities retry (the API answers that one request with a 500).
    return create_async_engine(database_url, **kwargs)  # type: ignore[arg-type]


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # expire_on_commit=False: objects stay readable after the edge commits.
    return async_sessionmaker(engine, expire_on_commit=False)


def create_autocommit_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    """Sessions where every statement commits on its own: no BEGIN and COMMIT round trips.

    For reads of one statement and for writes of one statement; work of several statements
    that must agree or land together needs a transaction."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
