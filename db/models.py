"""The six tables of the design (seed columns kept exactly; additions marked)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vocabulary.approvals import ApprovalState
from vocabulary.disks import DiskState
from vocabulary.statuses import HISTORY_STATUSES, DeploymentStatus
from vocabulary.users import ROLES

STATUSES = tuple(status.value for status in DeploymentStatus)
APPROVAL_STATES = tuple(state.value for state in ApprovalState)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, datetime: DateTime(timezone=True)}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_one_of("role", ROLES), name="users_role_valid"),
        CheckConstraint(
            "(webhook_url IS NULL) = (webhook_secret IS NULL)", name="users_webhook_signed"
        ),
        CheckConstraint(
            "max_active_deployments >= 0 AND max_total_gb >= 0", name="users_quota_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    # Addition: a disabled user's tokens stop working at once.
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Addition: where this user's deployments' events are POSTed, signed with the secret (the
    # secret is shown once, when made; it must be readable to sign, so it is not hashed).
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    # Addition: this user's own quota (api/quotas.py); null: their role's default from settings.
    max_active_deployments: Mapped[int | None] = mapped_column(Integer)
    max_total_gb: Mapped[int | None] = mapped_column(Integer)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("name", "version", name="templates_name_version_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    service_type: Mapped[str] = mapped_column(String(64))
    configuration: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    disk_allocations: Mapped[list[TemplateDiskAllocation]] = relationship(
        order_by="TemplateDiskAllocation.id", lazy="selectin"
    )


class DiskColumns:
    """A disk's fields (vocabulary.disks.DiskSpec), shared by a template's and a deployment's."""

    disk_type: Mapped[str] = mapped_column(String(32))
    size_gb: Mapped[int] = mapped_column(Integer)
    mount_point: Mapped[str] = mapped_column(String(255))
    volume_group: Mapped[str] = mapped_column(String(127))
    logical_volume: Mapped[str] = mapped_column(String(127))
    filesystem_type: Mapped[str] = mapped_column(String(16))
    allocation_params: Mapped[dict[str, Any]] = mapped_column(server_default="{}")


class TemplateDiskAllocation(DiskColumns, Base):
    __tablename__ = "template_disk_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("templates.id", ondelete="CASCADE"), index=True
    )
    # The design lists filesystem_type on deployment disks; the template states its default.
    filesystem_type: Mapped[str] = mapped_column(String(16), server_default="ext4")


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("user_id", "deployment_name", name="deployments_user_name_key"),
        CheckConstraint(_one_of("status", STATUSES), name="deployments_status_valid"),
        CheckConstraint(
            _one_of("approval_state", APPROVAL_STATES), name="deployments_approval_state_valid"
        ),
        # Newest-first listing per user and per status, keyset-paginated on id.
        Index("ix_deployments_user_id_id", "user_id", "id"),
        Index("ix_deployments_status_id", "status", "id"),
        # "Expiring within": only deployments with a lease.
        Index(
            "ix_deployments_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
        # The approvals page: what waits, oldest first.
        Index(
            "ix_deployments_awaiting_approval",
            "created_at",
            postgresql_where=text("status = 'awaiting_approval'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id"), index=True)
    deployment_name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(32), server_default=DeploymentStatus.PENDING.value)
    configuration: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    jenkins_job_id: Mapped[str | None] = mapped_column(String(255))
    # Addition: the idempotency key of the insert, and the link to the Temporal UI.
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Addition: the deploy attempt (retries count up), and until when a failed deployment keeps
    # what it built before it is torn down.
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    retained_until: Mapped[datetime | None] = mapped_column()
    # Addition: when the deployment's lease ends and it is destroyed (null: no lease).
    expires_at: Mapped[datetime | None] = mapped_column()
    # Addition: its approval (null unless its template requires one) and the plan approved.
    approval_state: Mapped[str | None] = mapped_column(String(16))
    approval_by: Mapped[str | None] = mapped_column(String(64))
    approval_at: Mapped[datetime | None] = mapped_column()
    approval_comment: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[dict[str, Any] | None] = mapped_column()


class QuotaReservation(Base):
    """Addition: what a launch or a resize holds against its user's quota while its deployment
    row or its change's history row does not exist yet (api/quotas.py, db/quotas.py). Written
    under the user's row lock in the transaction that checks the quota; removed where the row
    is written or the start or change is known to have failed; past `expires_at` (the workflow
    service never answered) it counts no more."""

    __tablename__ = "quota_reservations"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ("launch", "resize")), name="quota_reservations_kind"),
        Index("ix_quota_reservations_user_id", "user_id"),
        Index("ix_quota_reservations_workflow_id", "workflow_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # The drawn id of the deployment a launch starts (no row yet), or the resized deployment's.
    deployment_id: Mapped[int] = mapped_column(BigInteger)
    workflow_id: Mapped[str] = mapped_column(String(255))
    # [{"mount_point", "size_gb"}]: a launch's disks, or a resize's asked sizes.
    disks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column()


class DiskAllocation(DiskColumns, Base):
    __tablename__ = "disk_allocations"
    __table_args__ = (
        CheckConstraint(
            _one_of("state", tuple(s.value for s in DiskState)), name="disk_allocations_state_valid"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    # Addition: planned, allocated, released (vocabulary.disks.DiskState), and since when.
    state: Mapped[str] = mapped_column(String(16), server_default=DiskState.PLANNED.value)
    state_changed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DeploymentHistory(Base):
    __tablename__ = "deployment_history"
    __table_args__ = (
        # Addition: a retried activity or a re-sent callback never writes a row twice.
        UniqueConstraint("deployment_id", "event_key", name="deployment_history_event_key"),
        CheckConstraint(
            _one_of("status", HISTORY_STATUSES), name="deployment_history_status_valid"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    event_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    # Addition: the deploy attempt the row belongs to.
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CallbackSignature(Base):
    """Addition: signatures of accepted callback requests, kept past the 5-minute freshness window
    so that a captured request sent again is refused as a replay."""

    __tablename__ = "callback_signatures"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class LoginScope(StrEnum):
    """What a `login_failures` row counts for (api/login_throttle.py)."""

    ACCOUNT = "account"  # a username, from anywhere: its backoff
    CLIENT = "client"  # a client address, for any username: its failures per window
    KNOWN_CLIENT = "known_client"  # an address that signed in as a user: its own backoff


class LoginFailure(Base):
    """Addition: sign-in throttling state, shared by every API process. One row per key: an
    account (`username`), a client address (`client`), or an address that signed in as a user
    (both). A row past `expires_at` says nothing any more and may be deleted."""

    __tablename__ = "login_failures"
    __table_args__ = (
        CheckConstraint(
            _one_of("scope", tuple(scope.value for scope in LoginScope)),
            name="login_failures_scope_valid",
        ),
        Index("ix_login_failures_expires_at", "expires_at"),
    )

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    username: Mapped[str] = mapped_column(String(255), primary_key=True, server_default="")
    client: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    # Attempts counted as failed (an attempt counts from before its password is checked).
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    # account, known_client: no attempt before this (the backoff).
    blocked_until: Mapped[datetime] = mapped_column(server_default=func.now())
    # client: when the window its failures are counted in began.
    window_started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # known_client: when this address last signed in as this user.
    succeeded_at: Mapped[datetime | None]
    expires_at: Mapped[datetime] = mapped_column(server_default=func.now())
