from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from api.deps import CurrentUser, SessionDep, SettingsDep, require_roles
from api.errors import Conflict, NotFound
from api.password_pool import password_pool
from api.schemas import (
    UserAdminView,
    UserCreate,
    UserId,
    UserMe,
    UserMeUpdate,
    UserMeUpdated,
    UserUpdate,
    error_responses,
)
from api.user_webhooks import change_webhook
from db.models import User
from vocabulary.users import Role

router = APIRouter(tags=["users"], responses=error_responses(400, 401, 403, 404, 409))
admin_only = [require_roles(Role.ADMIN)]


@router.get("/api/users/me")
async def me(user: CurrentUser) -> UserMe:
    return UserMe.model_validate(user)


@router.patch("/api/users/me")
async def update_me(body: UserMeUpdate, user: CurrentUser, settings: SettingsDep) -> UserMeUpdated:
    """Any signed-in user's own webhook: the answer carries a new secret this once."""
    secret = await change_webhook(user, body, allow_private=settings.webhook_allow_private)
    # Built from UserMe, not from the row: the row holds the secret, shown only when new.
    return UserMeUpdated(**UserMe.model_validate(user).model_dump(), webhook_secret=secret)


@router.get("/api/users", dependencies=admin_only)
async def list_users(session: SessionDep) -> list[UserAdminView]:
    users = await session.scalars(select(User).order_by(User.id))
    return [UserAdminView.model_validate(u) for u in users]


@router.post("/api/users", status_code=201, dependencies=admin_only)
async def create_user(
    body: UserCreate, session: SessionDep, settings: SettingsDep
) -> UserAdminView:
    if await session.scalar(select(User.id).where(User.username == body.username)):
        raise Conflict(f"user {body.username!r} already exists")
    password_hash = await password_pool(settings).hash(body.password)  # off the event loop
    user = User(username=body.username, password_hash=password_hash, role=body.role)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return UserAdminView.model_validate(user)


@router.patch("/api/users/{user_id:int}", dependencies=admin_only)
async def update_user(user_id: UserId, body: UserUpdate, session: SessionDep) -> UserAdminView:
    """Change a role or disable a user; takes effect on their very next request."""
    # Serialise admin changes so two admins cannot demote each other at once.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext("users:admins"))))
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("user not found")
    stays_admin = (body.role or user.role) == Role.ADMIN and body.is_active is not False
    if user.role == Role.ADMIN and user.is_active and not stays_admin:
        admins = await session.scalar(
            select(func.count()).where(User.role == Role.ADMIN, User.is_active)
        )
        if admins == 1:
            raise Conflict("this is the last active admin")
    if body.role is not None:
        user.role = body.role
    if body.is_active is not None:
        user.is_active = body.is_active
    await session.flush()
    return UserAdminView.model_validate(user)
