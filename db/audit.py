"""The audit trail (`audit_entries`): who did what to which thing, from where, before → after.

Append-only in the database itself: a trigger refuses UPDATE, DELETE and TRUNCATE (migration
0009), so no code path, this one included, can rewrite what was recorded.

`record_audit` writes one entry with the caller's session: a change that is a database write
(users, templates) records it in its own transaction, so the two land together or not at all.
An operation sent to a deployment's workflow records it after the workflow accepted it, with a
`key` derived from the request's Idempotency-Key: the same request sent again writes nothing
more (`ON CONFLICT (request_key) DO NOTHING`).

`before` and `after` are what the API shows, never more: keys that hold a credential (a password
hash, a webhook secret, a token) are dropped at any depth and values whose keys name a secret (a
password, say) are masked, as a last guard behind each caller's own choice of fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    select,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base
from vocabulary.audit import AUDIT_ACTIONS, AUDIT_TARGETS, AuditAction, AuditTarget
from vocabulary.configuration import MASK, SECRET_KEY

# Never recorded, whatever a caller passes: credentials, not facts about a change.
DROPPED_KEYS = frozenset({"password_hash", "webhook_secret", "access_token", "callback_token"})


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        CheckConstraint(_one_of("action", AUDIT_ACTIONS), name="audit_entries_action_valid"),
        CheckConstraint(_one_of("target_type", AUDIT_TARGETS), name="audit_entries_target_valid"),
        # Newest first (id DESC) within each filter.
        Index("ix_audit_entries_actor_id_id", "actor_id", "id"),
        Index("ix_audit_entries_action_id", "action", "id"),
        Index("ix_audit_entries_target_id", "target_type", "target_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=sql_text("clock_timestamp()")
    )
    actor_id: Mapped[int] = mapped_column(Integer)
    actor_username: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(BigInteger)
    # JSON or null (a creation has no before).
    before: Mapped[Any] = mapped_column(JSONB, nullable=True)
    after: Mapped[Any] = mapped_column(JSONB, nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class Actor(Protocol):
    """Who acted: a `db.models.User` (its id, username and role at the time are copied)."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def redacted(value: Any) -> Any:
    """`value` as JSON with credentials dropped and secrets masked, at any depth."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (MASK if SECRET_KEY.search(key) and item is not None else walk(item))
                for key, item in node.items()
                if key not in DROPPED_KEYS
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(json.loads(json.dumps(value, default=_json_default)))


async def record_audit(
    session: AsyncSession,
    *,
    actor: Actor,
    address: str,
    action: AuditAction,
    target_type: AuditTarget,
    target_id: int,
    before: Any,
    after: Any,
    key: str | None = None,
) -> int | None:
    """Append one entry in `session`'s transaction (the caller commits); its id, or None when an
    entry with `key` exists already (the same request, sent again)."""
    stmt = (
        insert(AuditEntry)
        .values(
            actor_id=actor.id,
            actor_username=actor.username,
            actor_role=actor.role,
            address=address[:64],
            action=AuditAction(action).value,
            target_type=AuditTarget(target_type).value,
            target_id=target_id,
            before=None if before is None else redacted(before),
            after=None if after is None else redacted(after),
            request_key=key,
        )
        .on_conflict_do_nothing(index_elements=["request_key"])
        .returning(AuditEntry.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class AuditFilters:
    actor_id: int | None = None
    actor_username: str | None = None
    action: AuditAction | None = None
    target_type: AuditTarget | None = None
    target_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


async def audit_page(
    session: AsyncSession, filters: AuditFilters, *, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first, keyset-paginated on id like the deployments list: the entries below
    `before_id` that pass the filters, and the id the next page starts below (None: last)."""
    stmt = select(AuditEntry)
    if filters.actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == filters.actor_id)
    if filters.actor_username is not None:
        stmt = stmt.where(AuditEntry.actor_username == filters.actor_username)
    if filters.action is not None:
        stmt = stmt.where(AuditEntry.action == filters.action.value)
    if filters.target_type is not None:
        stmt = stmt.where(AuditEntry.target_type == filters.target_type.value)
    if filters.target_id is not None:
        stmt = stmt.where(AuditEntry.target_id == filters.target_id)
    if filters.since is not None:
        stmt = stmt.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEntry.at < filters.until)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)
    entries = list(await session.scalars(stmt))
    rows = [
        {
            "id": e.id,
            "at": e.at,
            "actor": {"id": e.actor_id, "username": e.actor_username, "role": e.actor_role},
            "address": e.address,
            "action": e.action,
            "target": {"type": e.target_type, "id": e.target_id},
            "before": e.before,
            "after": e.after,
        }
        for e in entries[:limit]
    ]
    next_before = entries[limit - 1].id if len(entries) > limit else None
    return rows, next_before
