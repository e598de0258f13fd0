from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, require_roles
from api.errors import Conflict
from api.schemas import UserCreate, UserPublic
from api.security import hash_password
from db.models import User

router = APIRouter(tags=["users"])


@router.get("/api/users/me")
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.post("/api/users", status_code=201, dependencies=[require_roles("admin")])
async def create_user(body: UserCreate, session: SessionDep) -> UserPublic:
    if await session.scalar(select(User.id).where(User.username == body.username)):
        raise Conflict(f"user {body.username!r} already exists")
    user = User(username=body.username, password_hash=hash_password(body.password), role=body.role)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return UserPublic.model_validate(user)
