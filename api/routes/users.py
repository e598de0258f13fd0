from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.audit import AuditDep
from api.deps import CurrentUser, SessionDep, SettingsDep, require_roles
from api.errors import Conflict, NotFound
from api.password_pool import password_pool
from api.quotas import quota_views
from api.schemas import (
    QuotaPublic,
    UserAdminDetail,
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
from settings import Settings
from vocabulary.audit import AuditAction
from vocabulary.users import Role

router = APIRouter(tags=["users"], responses=error_responses(400, 401, 403, 404, 409))
admin_only = [require_roles(Role.ADMIN)]


class _WithQuota:
    """A user row with its quota beside it, for the views that show both."""

    def __init__(self, user: User, quota: dict[str, Any]) -> None:
        self._user, self.quota = user, QuotaPublic(**quota)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._user, name)


async def _quota(session: AsyncSession, settings: Settings, user: User) -> dict[str, Any]:
    return (await quota_views(session, settings, [user]))[user.id]


async def _admin_detail(session: AsyncSession, settings: Settings, user: User) -> UserAdminDetail:
    return UserAdminDetail.model_validate(_WithQuota(user, await _quota(session, settings, user)))


@router.get("/api/users/me")
async def me(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> UserMe:
    """The caller, with their webhook's URL and their quota and use."""
    return UserMe.model_validate(_WithQuota(user, await _quota(session, settings, user)))


@router.patch("/api/users/me")
async def update_me(
    body: UserMeUpdate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> UserMeUpdated:
    """Any signed-in user's own webhook: the answer carries a new secret this once."""
    secret = await change_webhook(user, body, allow_private=settings.webhook_allow_private)
    # Built from UserMe, not from the row: the row holds the secret, shown only when new.
    mine = UserMe.model_validate(_WithQuota(user, await _quota(session, settings, user)))
    return UserMeUpdated(**mine.model_dump(), webhook_secret=secret)


@router.get("/api/users", dependencies=admin_only)
async def list_users(session: SessionDep, settings: SettingsDep) -> list[UserAdminDetail]:
    """Every user, with the quota that applies to them and their use."""
    users = list(await session.scalars(select(User).order_by(User.id)))
    quotas = await quota_views(session, settings, users)
    return [UserAdminDetail.model_validate(_WithQuota(u, quotas[u.id])) for u in users]


@router.post("/api/users", status_code=201, dependencies=admin_only)
async def create_user(
    body: UserCreate, session: SessionDep, settings: SettingsDep, audit: AuditDep
) -> UserAdminDetail:
    if await session.scalar(select(User.id).where(User.username == body.username)):
        raise Conflict(f"user {body.username!r} already exists")
    password_hash = await password_pool(settings).hash(body.password)  # off the event loop
    user = User(username=body.username, password_hash=password_hash, role=body.role)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    created = UserAdminView.model_validate(user)
    await audit.record(AuditAction.USER_CREATE, user.id, before=None, after=created.model_dump())
    return await _admin_detail(session, settings, user)


@router.patch("/api/users/{user_id:int}", dependencies=admin_only)
async def update_user(
    user_id: UserId, body: UserUpdate, session: SessionDep, settings: SettingsDep, audit: AuditDep
) -> UserAdminDetail:
    """Change a role, disable a user, or set their own quota (`max_active_deployments`,
    `max_total_gb`; null: their role's default); takes effect on their very next request."""
    # Serialise admin changes so two admins cannot demote each other at once.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext("users:admins"))))
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("user not found")
    before = UserAdminView.model_validate(user).model_dump()
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
    # Absent leaves a limit as it is; null returns it to the role's default. A limit below what
    # the user holds refuses their next launch or growth, and takes nothing away.
    if "max_active_deployments" in body.model_fields_set:
        user.max_active_deployments = body.max_active_deployments
    if "max_total_gb" in body.model_fields_set:
        user.max_total_gb = body.max_total_gb
    await session.flush()
    updated = UserAdminView.model_validate(user)
    # In the change's transaction: the entry and the change land together or not at all.
    await audit.record(AuditAction.USER_UPDATE, user.id, before=before, after=updated.model_dump())
    return await _admin_detail(session, settings, user)
