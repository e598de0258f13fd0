"""Approvals: a deployment's approval (state, by whom, when, the comment) and the plan shown to
the approver. Null on deployments of templates that require no approval.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("pending", "approved", "rejected", "expired")


def upgrade() -> None:
    op.add_column("deployments", sa.Column("approval_state", sa.String(16), nullable=True))
    op.add_column("deployments", sa.Column("approval_by", sa.String(64), nullable=True))
    op.add_column(
        "deployments", sa.Column("approval_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("deployments", sa.Column("approval_comment", sa.Text(), nullable=True))
    op.add_column("deployments", sa.Column("plan", JSONB(), nullable=True))
    op.create_check_constraint(
        "deployments_approval_state_valid",
        "deployments",
        "approval_state IS NULL OR approval_state IN ("
        + ", ".join(f"'{state}'" for state in STATES)
        + ")",
    )
    # The approvals page: what waits, oldest first.
    op.create_index(
        "ix_deployments_awaiting_approval",
        "deployments",
        ["created_at"],
        postgresql_where=sa.text("status = 'awaiting_approval'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deployments_awaiting_approval", table_name="deployments")
    op.drop_constraint("deployments_approval_state_valid", "deployments")
    for column in ("plan", "approval_comment", "approval_at", "approval_by", "approval_state"):
        op.drop_column("deployments", column)
