from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from api.client_address import request_client_address
from api.deps import SessionDep, SettingsDep
from api.errors import NotAuthenticated
from api.login_throttle import record_success, reserve_attempt
from api.password_pool import password_pool
from api.schemas import Token, error_responses
from api.security import create_access_token
from db.models import User

router = APIRouter(tags=["auth"], responses=error_responses(401, 429, 503))


@router.post("/api/auth/token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    pool = password_pool(settings)
    with pool.sign_in_slot():
        address = request_client_address(request, settings.trusted_proxies)
        reservation = await reserve_attempt(session, form.username, address, settings)
        user = await session.scalar(select(User).where(User.username == form.username))
        # The attempt counts before the password is checked; committing also gives the database
        # connection back for the slow part.
        await session.commit()
        valid, new_hash = await pool.verify(form.password, user.password_hash if user else None)
    if user is None or not valid or not user.is_active:
        raise NotAuthenticated("Incorrect username or password")
    await record_success(session, reservation, settings)
    if new_hash is not None:  # hashing parameters changed since this password was set
        user.password_hash = new_hash
    token = create_access_token(user.id, settings.secret_key, settings.access_token_minutes)
    return Token(access_token=token)
