from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import NotAuthenticated
from api.schemas import Token
from api.security import create_access_token, verify_password
from db.models import User

router = APIRouter(tags=["auth"])


@router.post("/api/auth/token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    user = await session.scalar(select(User).where(User.username == form.username))
    valid, new_hash = verify_password(form.password, user.password_hash if user else None)
    if user is None or not valid or not user.is_active:
        raise NotAuthenticated("Incorrect username or password")
    if new_hash is not None:  # hashing parameters changed since this password was set
        user.password_hash = new_hash
    token = create_access_token(user.id, settings.secret_key, settings.access_token_minutes)
    return Token(access_token=token)
