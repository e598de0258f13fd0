"""The life of a deployment after it is created: its attempt and retention, each history row's
attempt, and each disk's state.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deployments", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "deployments", sa.Column("retained_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "deployment_history",
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "disk_allocations",
        sa.Column("state", sa.String(length=16), server_default="planned", nullable=False),
    )
    op.add_column(
        "disk_allocations",
        sa.Column(
            "state_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        "disk_allocations_state_valid",
        "disk_allocations",
        "state IN ('planned', 'allocated', 'released')",
    )


def downgrade() -> None:
    op.drop_constraint("disk_allocations_state_valid", "disk_allocations", type_="check")
    op.drop_column("disk_allocations", "state_changed_at")
    op.drop_column("disk_allocations", "state")
    op.drop_column("deployment_history", "attempt")
    op.drop_column("deployments", "retained_until")
    op.drop_column("deployments", "attempt")
