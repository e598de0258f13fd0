"""Statuses of the whole life of a deployment (design section 8), and history statuses of their
own: the first row of every deployment says `created`, as the seed has it.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here on purpose: a migration states the schema as it was at its revision.
STATUSES = (
    "'pending', 'awaiting_approval', 'provisioning', 'queued', 'running', 'succeeded', 'failed',"
    " 'timed_out', 'updating', 'cancelling', 'cancelled', 'destroying', 'destroyed', 'rejected'"
)
OLD_STATUSES = (
    "'pending', 'provisioning', 'queued', 'running', 'succeeded', 'failed', 'timed_out',"
    " 'cancelled'"
)


def upgrade() -> None:
    op.drop_constraint("deployments_status_valid", "deployments", type_="check")
    op.alter_column("deployments", "status", type_=sa.String(32), existing_nullable=False)
    op.create_check_constraint("deployments_status_valid", "deployments", f"status IN ({STATUSES})")
    op.alter_column("deployment_history", "status", type_=sa.String(32), existing_nullable=False)
    op.execute("UPDATE deployment_history SET status = 'created' WHERE event_key = 'created'")
    op.create_check_constraint(
        "deployment_history_status_valid",
        "deployment_history",
        f"status IN ('created', {STATUSES})",
    )


def downgrade() -> None:
    op.drop_constraint("deployment_history_status_valid", "deployment_history", type_="check")
    op.execute("UPDATE deployment_history SET status = 'pending' WHERE event_key = 'created'")
    op.alter_column("deployment_history", "status", type_=sa.String(16), existing_nullable=False)
    op.drop_constraint("deployments_status_valid", "deployments", type_="check")
    op.alter_column("deployments", "status", type_=sa.String(16), existing_nullable=False)
    op.create_check_constraint(
        "deployments_status_valid", "deployments", f"status IN ({OLD_STATUSES})"
    )
