"""Request dependencies: settings, a session that commits at the edge, the Temporal client and
the current user (re-read from the database on every request, so a disabled user is out at once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
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


async def get_current_user(
    session: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    user_id = user_id_from_token(token, settings.secret_key) if token else None
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
