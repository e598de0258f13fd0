from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import DomainError, NotAuthenticated
from api.login_throttle import WINDOW_S, clear_failures, is_throttled, record_failure
from api.schemas import Token, error_responses
from api.security import create_access_token, verify_password
from db.models import User

router = APIRouter(tags=["auth"], responses=error_responses(401, 429))


class TooManyAttempts(DomainError):
    status_code = 429


@router.post("/api/auth/token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    client = request.client.host if request.client else "unknown"
    if await is_throttled(session, form.username, client):
        raise TooManyAttempts(
            f"too many failed sign-ins; try again within {WINDOW_S // 60} minutes"
        )
    user = await session.scalar(select(User).where(User.username == form.username))
    valid, new_hash = verify_password(form.password, user.password_hash if user else None)
    if user is None or not valid or not user.is_active:
        await record_failure(session, form.username, client)
        await session.commit()  # the failure counts even though this request fails
        raise NotAuthenticated("Incorrect username or password")
    await clear_failures(session, form.username)
    if new_hash is not None:  # hashing parameters changed since this password was set
        user.password_hash = new_hash
    token = create_access_token(user.id, settings.secret_key, settings.access_token_minutes)
    return Token(access_token=token)
