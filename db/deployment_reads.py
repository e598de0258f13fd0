"""The deployment read model: the queries behind the deployment views, one statement each.

Visibility is part of every query: admins see every deployment, everyone else only their own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, DeploymentHistory, DiskAllocation, Template, User
from db.repository import disks_json
from vocabulary.users import Role


def _visible(user: User) -> Any:
    """Admins see every deployment; everyone else only their own."""
    return true() if user.role == Role.ADMIN else Deployment.user_id == user.id


SUMMARY_COLUMNS = (
    Deployment.id,
    Deployment.deployment_name,
    Deployment.status,
    Deployment.template_id,
    Template.name.label("template_name"),
    Deployment.user_id,
    User.username,
    Deployment.workflow_id,
    Deployment.created_at,
    Deployment.updated_at,
)


def _joined(*columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .join(Template, Template.id == Deployment.template_id)
        .join(User, User.id == Deployment.user_id)
    )


async def deployment_detail(
    session: AsyncSession, user: User, deployment_id: int
) -> dict[str, Any] | None:
    stmt = _joined(
        *SUMMARY_COLUMNS,
        Template.service_type,
        Template.version.label("template_version"),
        Deployment.configuration,
        Deployment.jenkins_job_id,
        Deployment.attempt,
        Deployment.retained_until,
        disks_json(
            DiskAllocation,
            DiskAllocation.deployment_id == Deployment.id,
            "state",
            "state_changed_at",
        ).label("disk_allocations"),
    ).where(Deployment.id == deployment_id, _visible(user))
    row = (await session.execute(stmt)).mappings().one_or_none()
    return dict(row) if row else None


async def list_deployments(
    session: AsyncSession,
    user: User,
    *,
    status: str | None,
    template_id: int | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first, keyset-paginated on id (ids grow with creation time): a page of rows with
    ids below `before_id`, and the id the next page starts below (None on the last page)."""
    stmt = _joined(*SUMMARY_COLUMNS).where(_visible(user))
    if status is not None:
        stmt = stmt.where(Deployment.status == status)
    if template_id is not None:
        stmt = stmt.where(Deployment.template_id == template_id)
    if before_id is not None:
        stmt = stmt.where(Deployment.id < before_id)
    stmt = stmt.order_by(Deployment.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await session.execute(stmt)).mappings()]
    next_before = rows[limit - 1]["id"] if len(rows) > limit else None
    return rows[:limit], next_before


# A history row as every view shows it (the history list, the live stream).
HISTORY_COLUMNS = (
    DeploymentHistory.id,
    DeploymentHistory.status,
    DeploymentHistory.message,
    DeploymentHistory.details,
    DeploymentHistory.attempt,
    DeploymentHistory.created_at,
)


async def deployment_history(
    session: AsyncSession, user: User, deployment_id: int
) -> list[dict[str, Any]]:
    """Oldest first. Empty means missing or not the caller's: every deployment has its
    `created` row, written in the same transaction as the deployment itself."""
    history = DeploymentHistory
    stmt = (
        select(*HISTORY_COLUMNS)
        .join(Deployment, Deployment.id == history.deployment_id)
        .where(history.deployment_id == deployment_id, _visible(user))
        .order_by(history.id)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]
