"""Quotas: how many deployments a user may hold at once (`max_active_deployments`) and how many
GB their disks may add up to (`max_total_gb`). A user's own limit (set by an admin, PATCH
/api/users/{id}) or else their role's default from settings; None is no limit.

A launch or a resize is checked and reserved in one transaction under the user's row lock
(`db/quotas.py`), so two requests of one user are counted one after the other and concurrent
launches never overshoot. The launch commits that transaction before it starts the workflow
(api/launch.py): the reservation it leaves counts as an active deployment with its disks until
the deployment's row exists, and is removed where the row is written, or when the start is known
to have failed; a start whose outcome is unknown leaves it to expire
(`quota_reservation_ttl_s`). A resize's reservation (the asked sizes) counts until its change's
history row exists, which the workflow writes before it accepts the change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import NotFound, ValidationFailed
from db.models import User
from db.quotas import (
    QuotaOwner,
    QuotaUse,
    lock_owner,
    prune,
    quota_use,
    quota_uses,
    release,
    release_launches,
    reserve,
)
from settings import Settings
from vocabulary.disks import DiskResize, DiskSpec

QUOTA_EXCEEDED = "quota_exceeded"


@dataclasses.dataclass(frozen=True)
class QuotaLimits:
    max_active_deployments: int | None
    max_total_gb: int | None


def limits_of(user: User | QuotaOwner, settings: Settings) -> QuotaLimits:
    """The user's own limits where set, else their role's."""
    role_active, role_gb = settings.role_quota(user.role)
    return QuotaLimits(
        role_active if user.max_active_deployments is None else user.max_active_deployments,
        role_gb if user.max_total_gb is None else user.max_total_gb,
    )


def quota_view(user: User, settings: Settings, use: QuotaUse) -> dict[str, Any]:
    """The `quota` of a user's JSON: the limits that apply (null: none) and what they use."""
    limits = limits_of(user, settings)
    return {
        "max_active_deployments": limits.max_active_deployments,
        "max_total_gb": limits.max_total_gb,
        "active_deployments": use.active_deployments,
        "total_gb": use.total_gb,
    }


async def quota_views(
    session: AsyncSession, settings: Settings, users: list[User]
) -> dict[int, dict[str, Any]]:
    uses = await quota_uses(session, [user.id for user in users])
    return {user.id: quota_view(user, settings, uses[user.id]) for user in users}


def _exceeded(
    whose: str, loc: list[Any], quota: str, used: int, asked: int, limit: int, unit: str = ""
) -> dict[str, Any]:
    """FastAPI's error shape, with the figures in `ctx`."""
    return {
        "loc": loc,
        "msg": (
            f"{whose} quota {quota} is {limit}{unit}: {used}{unit} in use, and {asked}{unit} "
            "more would pass it"
        ),
        "type": QUOTA_EXCEEDED,
        "ctx": {"quota": quota, "used": used, "asked": asked, "limit": limit},
    }


async def reserve_launch(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    deployment_id: int,
    workflow_id: str,
    disks: list[DiskSpec],
) -> int:
    """Check that one more deployment with these disks stays within the user's quota, and
    reserve it; the reservation's id. 422 `quota_exceeded` otherwise, with nothing written.
    The caller commits."""
    owner = await lock_owner(session, user.id)
    if owner is None:
        raise NotFound("user not found")
    await prune(session, owner.id)
    # A retry with the same Idempotency-Key names the same workflow: it replaces that
    # workflow's reservation rather than counting twice.
    use = await quota_use(session, owner.id, skip_workflow=workflow_id)
    limits = limits_of(owner, settings)
    asked_gb = sum(disk.size_gb for disk in disks)
    errors = []
    if limits.max_active_deployments is not None and (
        use.active_deployments + 1 > limits.max_active_deployments
    ):
        errors.append(
            _exceeded(
                "your",
                ["body"],
                "max_active_deployments",
                use.active_deployments,
                1,
                limits.max_active_deployments,
            )
        )
    if limits.max_total_gb is not None and use.total_gb + asked_gb > limits.max_total_gb:
        errors.append(
            _exceeded(
                "your",
                ["body", "disk_allocations"],
                "max_total_gb",
                use.total_gb,
                asked_gb,
                limits.max_total_gb,
                " GB",
            )
        )
    if errors:
        raise ValidationFailed(errors)
    return await reserve(
        session,
        kind="launch",
        user_id=owner.id,
        deployment_id=deployment_id,
        workflow_id=workflow_id,
        disks=[{"mount_point": d.mount_point, "size_gb": d.size_gb} for d in disks],
        ttl_s=settings.quota_reservation_ttl_s,
    )


async def launch_recorded(session: AsyncSession, workflow_id: str) -> None:
    """The deployment's row is written in this transaction: its workflow's launch reservations
    (this request's, and an earlier request's with the same key) count no more."""
    await release_launches(session, workflow_id)


async def launch_abandoned(session: AsyncSession, reservation_id: int) -> None:
    """This request started nothing (the service refused the start, or another request's
    workflow of the same key runs): its own reservation goes, in a transaction of its own."""
    await release(session, reservation_id)
    await session.commit()


async def reserve_resize(
    session: AsyncSession,
    settings: Settings,
    *,
    owner_id: int,
    deployment_id: int,
    workflow_id: str,
    asked: list[DiskResize],
) -> int:
    """Check that growing these disks keeps the deployment's OWNER within their `max_total_gb`
    (whoever asks, an admin included), and reserve the asked sizes; the reservation's id.
    422 `quota_exceeded` otherwise; the caller's transaction is then rolled back."""
    owner = await lock_owner(session, owner_id)
    if owner is None:
        raise NotFound("deployment not found")
    await prune(session, owner.id)
    before = await quota_use(session, owner.id)
    reservation = await reserve(
        session,
        kind="resize",
        user_id=owner.id,
        deployment_id=deployment_id,
        workflow_id=workflow_id,
        disks=[{"mount_point": d.mount_point, "size_gb": d.size_gb} for d in asked],
        ttl_s=settings.quota_reservation_ttl_s,
    )
    after = await quota_use(session, owner.id)
    grows_by = after.total_gb - before.total_gb
    limit = limits_of(owner, settings).max_total_gb
    # Only growth is refused: a user an admin put below their use may still change values.
    if limit is not None and grows_by > 0 and after.total_gb > limit:
        raise ValidationFailed(
            [
                _exceeded(
                    "the owner's",
                    ["body", "disk_allocations"],
                    "max_total_gb",
                    before.total_gb,
                    grows_by,
                    limit,
                    " GB",
                )
            ]
        )
    return reservation


async def resize_settled(session: AsyncSession, reservation_id: int) -> None:
    """The workflow accepted the change (its history row now holds the sizes) or refused it."""
    await release(session, reservation_id)
