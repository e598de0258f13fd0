"""The deployment read model: the queries behind the deployment views, one statement each.

Visibility is part of every query: admins see every deployment, everyone else only their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    bindparam,
    func,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, DeploymentHistory, DiskAllocation, Template, User
from db.repository import disks_json
from vocabulary.configuration import masked
from vocabulary.users import Role

T = TypeVar("T")


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


# The detail's columns, its configuration and approval raw (`detail_row` masks and nests them).
DETAIL_COLUMNS = (
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
)


def detail_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of DETAIL_COLUMNS as the detail shows it: secrets masked, the approval nested."""
    detail = dict(row)
    detail["configuration"] = masked(detail["configuration"], detail.pop("declared_overrides"))
    approval = {key: detail.pop(f"approval_{key}") for key in ("state", "by", "at", "comment")}
    detail["approval"] = approval if approval["state"] is not None else None
    return detail


async def deployment_detail(
    session: AsyncSession, user: User, deployment_id: int
) -> dict[str, Any] | None:
    stmt = _joined(*DETAIL_COLUMNS).where(Deployment.id == deployment_id, _visible(user))
    row = (await session.execute(stmt)).mappings().one_or_none()
    return None if row is None else detail_row(row)


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


# The views as the API serves them: the caller's check and the read in one statement, sent
# straight to asyncpg (no ORM, no statement built per request). The caller is the token's user
# if it exists and is active (a CTE of at most one row); the read is LATERAL to it, so its
# visibility is the caller's role and id as the database has them now. What comes back tells
# the cases apart: no row, no such caller (401); a row without a deployment, none the caller
# may see (404).


class Fetcher(Protocol):
    """What the caller reads run on: an asyncpg connection, or anything fetching like one."""

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]: ...


@dataclass(frozen=True)
class PreparedRead:
    """A statement compiled once for asyncpg: its text and the names of its parameters in order
    (`$1`, `$2`, ...), so that a read sends text asyncpg has already prepared on the connection."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    @classmethod
    def of(cls, stmt: Select[Any]) -> PreparedRead:
        compiled = stmt.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
        names = tuple(compiled.positiontup or ())
        # Literals of the statement (JSON keys, the admin role): the same value every time.
        fixed = {name: compiled.binds[name].value for name in names}
        return cls(str(compiled), names, {k: v for k, v in fixed.items() if v is not None})

    def args(self, **values: Any) -> list[Any]:
        values = {**self.fixed, **values}
        return [values[name] for name in self.names]


@dataclass(frozen=True)
class CallerRead(Generic[T]):
    """`caller`: the token's user exists and is active; `value`: what they may see (None: the
    deployment is missing or not theirs)."""

    caller: bool
    value: T | None


def _caller() -> Any:
    return select(User.id, User.role).where(User.id == CALLER_ID, User.is_active).cte("caller")


# The token's user id. Rows are matched to it as a parameter, not as the CTE's column: the
# planner then sees `user_id = $1` as in `_visible`, with what it knows of that user's rows.
CALLER_ID = bindparam("caller_id", type_=Integer)


def _is_admin(caller: Any) -> Any:
    return caller.c.role == bindparam("admin", Role.ADMIN.value, type_=String)


def _caller_sees(caller: Any) -> Any:
    """`_visible` for the caller the statement reads (no row at all when there is none)."""
    return or_(_is_admin(caller), Deployment.user_id == CALLER_ID)


def _detail_for_caller() -> PreparedRead:
    caller = _caller()
    found = (
        _joined(*DETAIL_COLUMNS)
        .where(Deployment.id == bindparam("deployment_id", type_=BigInteger), _caller_sees(caller))
        .lateral("found")
    )
    stmt = (
        select(caller.c.id.label("caller_id"), *found.c)
        .select_from(caller)
        .outerjoin(found, true())
    )
    return PreparedRead.of(stmt)


DETAIL_FOR_CALLER = _detail_for_caller()


async def detail_for_caller(
    conn: Fetcher, caller_id: int, deployment_id: int
) -> CallerRead[dict[str, Any]]:
    read = DETAIL_FOR_CALLER
    rows = await conn.fetch(read.sql, *read.args(caller_id=caller_id, deployment_id=deployment_id))
    if not rows:
        return CallerRead(False, None)
    row = rows[0]
    if row["id"] is None:
        return CallerRead(True, None)
    return CallerRead(True, detail_row({name: row[name] for name in DETAIL_NAMES}))


DETAIL_NAMES = tuple(_joined(*DETAIL_COLUMNS).selected_columns.keys())


@cache
def _page_for_caller(status: bool, template: bool, expiring: bool, before: bool) -> PreparedRead:
    """The list's statement for one combination of filters. Two branches, one per kind of
    caller, each gated on the caller's role (a one-time filter: the other never runs), so that
    each keeps its own index: an admin's walks the primary key down, anyone else's their own
    rows (`user_id = $1`, as `_visible` reads them)."""
    caller = _caller()

    def branch(admin: bool) -> Any:
        stmt = _joined(*SUMMARY_COLUMNS)
        if admin:
            stmt = stmt.where(_is_admin(caller))
        else:
            stmt = stmt.where(~_is_admin(caller), Deployment.user_id == CALLER_ID)
        if status:
            stmt = stmt.where(Deployment.status == bindparam("status", type_=String))
        if template:
            stmt = stmt.where(Deployment.template_id == bindparam("template_id", type_=Integer))
        if expiring:
            seconds = bindparam("expiring_within_s", type_=Integer)
            stmt = stmt.where(
                Deployment.expires_at <= func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)
            )
        if before:
            stmt = stmt.where(Deployment.id < bindparam("before_id", type_=BigInteger))
        return stmt.order_by(Deployment.id.desc()).limit(bindparam("rows", type_=Integer))

    page = union_all(branch(True), branch(False)).subquery().lateral("page")
    stmt = (
        select(caller.c.id.label("caller_id"), *page.c)
        .select_from(caller)
        .outerjoin(page, true())
        .order_by(page.c.id.desc())
    )
    return PreparedRead.of(stmt)


SUMMARY_NAMES = tuple(_joined(*SUMMARY_COLUMNS).selected_columns.keys())


async def page_for_caller(
    conn: Fetcher,
    caller_id: int,
    *,
    status: str | None,
    template_id: int | None,
    before_id: int | None,
    limit: int,
    expiring_within_s: int | None = None,
) -> CallerRead[tuple[list[dict[str, Any]], int | None]]:
    """Newest first, keyset-paginated on id (ids grow with creation time): a page of the rows
    the caller sees with ids below `before_id`, and the id the next page starts below (None on
    the last page)."""
    read = _page_for_caller(
        status is not None,
        template_id is not None,
        expiring_within_s is not None,
        before_id is not None,
    )
    args = read.args(
        caller_id=caller_id,
        status=status,
        template_id=template_id,
        expiring_within_s=expiring_within_s,
        before_id=before_id,
        rows=limit + 1,
    )
    found = await conn.fetch(read.sql, *args)
    if not found:
        return CallerRead(False, None)
    rows = [{name: row[name] for name in SUMMARY_NAMES} for row in found if row["id"] is not None]
    next_before = rows[limit - 1]["id"] if len(rows) > limit else None
    return CallerRead(True, (rows[:limit], next_before))


def _history_for_caller() -> PreparedRead:
    caller = _caller()
    history = DeploymentHistory
    found = (
        select(Deployment.id)
        .where(Deployment.id == bindparam("deployment_id", type_=BigInteger), _caller_sees(caller))
        .lateral("found")
    )
    page = (
        select(*HISTORY_COLUMNS)
        .where(
            history.deployment_id == found.c.id,
            history.id > bindparam("after", type_=BigInteger),
        )
        .order_by(history.id)
        .limit(bindparam("rows", type_=Integer))
        .lateral("page")
    )
    stmt = (
        select(caller.c.id.label("caller_id"), found.c.id.label("deployment_id"), *page.c)
        .select_from(caller)
        .outerjoin(found, true())
        .outerjoin(page, true())
        .order_by(page.c.id)
    )
    return PreparedRead.of(stmt)


HISTORY_FOR_CALLER = _history_for_caller()
HISTORY_NAMES = tuple(select(*HISTORY_COLUMNS).selected_columns.keys())


async def history_for_caller(
    conn: Fetcher,
    caller_id: int,
    deployment_id: int,
    *,
    after: int = 0,
    limit: int = HISTORY_PAGE_ROWS,
) -> CallerRead[HistoryPage]:
    """Rows with ids above `after`, oldest first, at most `limit` of them (None: the deployment
    is missing or not the caller's). The deployment, visibility included, is joined LATERAL to
    its page of rows (one more than asked, to know whether there are more), so a page past the
    last row is an empty page of a deployment, not a 404."""
    read = HISTORY_FOR_CALLER
    args = read.args(caller_id=caller_id, deployment_id=deployment_id, after=after, rows=limit + 1)
    found = await conn.fetch(read.sql, *args)
    if not found:
        return CallerRead(False, None)
    if found[0]["deployment_id"] is None:
        return CallerRead(True, None)
    rows = [{name: row[name] for name in HISTORY_NAMES} for row in found if row["id"] is not None]
    return CallerRead(True, HistoryPage(rows[:limit], more=len(rows) > limit))


CALLER_ACTIVE = PreparedRead.of(select(_caller().c.id))


async def caller_active(conn: Fetcher, caller_id: int) -> bool:
    """The caller check alone: for a request refused before its read (an invalid parameter),
    which must still answer 401 to a caller who is not let in."""
    read = CALLER_ACTIVE
    return bool(await conn.fetch(read.sql, *read.args(caller_id=caller_id)))
