"""The deployment read model: the queries behind the deployment views, one statement each.

Visibility is part of every query: admins see every deployment, everyone else only their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, DeploymentHistory, DiskAllocation, Template, User
from db.repository import disks_json
from vocabulary.configuration import masked
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
    Deployment.expires_at,
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
        Template.configuration["provisio"]["overrides"].label("declared_overrides"),
        Deployment.jenkins_job_id,
        Deployment.attempt,
        Deployment.retained_until,
        Deployment.approval_state,
        Deployment.approval_by,
        Deployment.approval_at,
        Deployment.approval_comment,
        Deployment.plan,
        disks_json(
            DiskAllocation,
            DiskAllocation.deployment_id == Deployment.id,
            "state",
            "state_changed_at",
        ).label("disk_allocations"),
    ).where(Deployment.id == deployment_id, _visible(user))
    row = (await session.execute(stmt)).mappings().one_or_none()
    if row is None:
        return None
    detail = dict(row)
    detail["configuration"] = masked(detail["configuration"], detail.pop("declared_overrides"))
    approval = {key: detail.pop(f"approval_{key}") for key in ("state", "by", "at", "comment")}
    detail["approval"] = approval if approval["state"] is not None else None
    return detail


async def list_deployments(
    session: AsyncSession,
    user: User,
    *,
    status: str | None,
    template_id: int | None,
    before_id: int | None,
    limit: int,
    expiring_within_s: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first, keyset-paginated on id (ids grow with creation time): a page of rows with
    ids below `before_id`, and the id the next page starts below (None on the last page)."""
    stmt = _joined(*SUMMARY_COLUMNS).where(_visible(user))
    if status is not None:
        stmt = stmt.where(Deployment.status == status)
    if template_id is not None:
        stmt = stmt.where(Deployment.template_id == template_id)
    if expiring_within_s is not None:  # a lease ending within that long (or overdue)
        horizon = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, expiring_within_s)
        stmt = stmt.where(Deployment.expires_at <= horizon)
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


# A history page: at most this many rows unless the caller asks for fewer (the API's default).
HISTORY_PAGE_ROWS = 500


@dataclass(frozen=True)
class HistoryPage:
    rows: list[dict[str, Any]]
    # Rows after the last one of this page exist (when it was read).
    more: bool


async def deployment_history(
    session: AsyncSession,
    user: User,
    deployment_id: int,
    *,
    after: int = 0,
    limit: int = HISTORY_PAGE_ROWS,
) -> HistoryPage | None:
    """Rows with ids above `after`, oldest first, at most `limit` of them; None when the
    deployment is missing or not the caller's. One statement: the deployment, visibility
    included, joined LATERAL to its page of rows (one more than asked, to know whether there are
    more), so a page past the last row is an empty page of a deployment, not a 404."""
    history = DeploymentHistory
    page = (
        select(*HISTORY_COLUMNS)
        .where(history.deployment_id == Deployment.id, history.id > after)
        .order_by(history.id)
        .limit(limit + 1)
        .lateral("page")
    )
    stmt = (
        select(*page.c)
        .select_from(Deployment)
        .outerjoin(page, true())
        .where(Deployment.id == deployment_id, _visible(user))
        .order_by(page.c.id)
    )
    found = [dict(r) for r in (await session.execute(stmt)).mappings()]
    if not found:
        return None
    rows = [row for row in found if row["id"] is not None]
    return HistoryPage(rows[:limit], more=len(rows) > limit)
