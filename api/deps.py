"""Request dependencies: settings, a session that commits at the edge, the Temporal client and
the current user (re-read from the database on every request, so a disabled user is out at once)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn
from temporalio.client import Client

from api.errors import Forbidden, NotAuthenticated
from api.security import user_id_from_token
from db.models import User
from settings import Settings
from vocabulary.users import Role

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


# Dependencies are coroutines even when they do not await: FastAPI runs plain functions on
# its thread pool, a hand-off per request.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # Reads run each statement on its own (no BEGIN/COMMIT round trips); writes get a
    # transaction that commits here.
    state = request.app.state
    read_only = request.method in READ_ONLY_METHODS
    async with (state.read_sessionmaker if read_only else state.sessionmaker)() as session:
        yield session
        if not read_only:
            await session.commit()


async def get_temporal(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit before the response is sent, so a client that reads right after a
# 201 sees what it created, and a failed commit is the request's error, not a lost write.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]


# Tokens already verified: (signing key, token) -> (user id, expiry). Verifying one (PyJWT)
# costs ~0.1 ms, the same token comes with every request of a client, and only the expiry
# changes what a verified token says. Only tokens that verified are kept, so a forged one
# cannot fill it.
_verified: dict[tuple[str, str], tuple[int, int]] = {}
VERIFIED_TOKENS_KEPT = 4096


def token_user_id(token: str | None, secret_key: str) -> int | None:
    """`user_id_from_token`, remembered until the token expires."""
    if not token:
        return None
    key = (secret_key, token)
    known = _verified.get(key)
    # PyJWT's own rule: expired once `exp <= now`.
    if known is not None and known[1] > time.time():
        return known[0]
    user_id = user_id_from_token(token, secret_key)
    if user_id is None:
        _verified.pop(key, None)
        return None
    expires = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    if len(_verified) >= VERIFIED_TOKENS_KEPT:
        del _verified[next(iter(_verified))]
    _verified[key] = (user_id, expires)
    return user_id


BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


async def get_current_user(session: SessionDep, settings: SettingsDep, token: BearerToken) -> User:
    user_id = token_user_id(token, settings.secret_key)
    user = await session.get(User, user_id) if user_id is not None else None
    if user is None or not user.is_active:
        raise NotAuthenticated("Not authenticated")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return user

    return Depends(check)


AdminUser = Annotated[User, require_roles(Role.ADMIN)]


async def get_caller_id(request: Request, token: BearerToken) -> int:
    """The token's user id, not yet checked against the database: the read views check the
    user in their own statement (db.deployment_reads' `*_for_caller`). No token, a forged or an
    expired one: 401 at once, as CurrentUser answers."""
    user_id = token_user_id(token, request.app.state.settings.secret_key)
    if user_id is None:
        raise NotAuthenticated("Not authenticated")
    return user_id


CallerId = Annotated[int, Depends(get_caller_id)]


class ReadConnection:
    """A connection of the engine's pool, lent to reads of one statement that go straight to
    its asyncpg connection (which prepares each text once per connection). Taken without a
    SQLAlchemy Connection around it: that costs ~0.2 ms of CPU a request here."""

    def __init__(self, engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
        self._engine = engine
        self._pooled = pooled

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]:
        try:
            return await self._pooled.driver_connection.fetch(query, *args)  # type: ignore[no-any-return, union-attr]
        except Exception:
            # asyncpg's own error, which SQLAlchemy has not seen. This connection is not used
            # again, and the statement goes once more through SQLAlchemy: a database lost is
            # then the DBAPIError the API answers 503 for (and a broken pool is dropped), a
            # failing statement raises as SQLAlchemy's error, and a failure of the driver's
            # prepared statement alone is answered.
            await greenlet_spawn(self._pooled.invalidate)
            async with self._engine.connect() as connection:
                result = await connection.exec_driver_sql(query, tuple(args))
                return list(result.mappings())


def _read_engine(request: Request) -> AsyncEngine:
    # The app's engine: the read views take raw connections from its pool.
    return request.app.state.engine  # type: ignore[no-any-return]


@asynccontextmanager
async def read_connection(request: Request) -> AsyncIterator[ReadConnection]:
    """A connection for the read views (db.deployment_reads' `*_for_caller`)."""
    engine = _read_engine(request)
    pooled = await engine.raw_connection()  # a failure to connect raised as SQLAlchemy does
    try:
        yield ReadConnection(engine, pooled)
    finally:
        # In a greenlet, as SQLAlchemy returns its own: the pool may close the connection (one
        # past its size), which awaits the driver.
        await greenlet_spawn(pooled.close)
