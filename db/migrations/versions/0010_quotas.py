"""Quotas: a user's own limits (null: their role's default from settings), and what launches and
resizes hold against them until their rows exist (api/quotas.py).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("max_active_deployments", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("max_total_gb", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "users_quota_not_negative", "users", "max_active_deployments >= 0 AND max_total_gb >= 0"
    )
    op.create_table(
        "quota_reservations",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("disks", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('launch', 'resize')", name="quota_reservations_kind"),
    )
    op.create_index("ix_quota_reservations_user_id", "quota_reservations", ["user_id"])
    op.create_index("ix_quota_reservations_workflow_id", "quota_reservations", ["workflow_id"])


def downgrade() -> None:
    op.drop_table("quota_reservations")
    op.drop_constraint("users_quota_not_negative", "users", type_="check")
    op.drop_column("users", "max_total_gb")
    op.drop_column("users", "max_active_deployments")
