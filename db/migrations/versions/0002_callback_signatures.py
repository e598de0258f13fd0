"""Signatures of accepted callback requests, for replay protection.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callback_signatures",
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index(
        "ix_callback_signatures_deployment_id", "callback_signatures", ["deployment_id"]
    )
    op.create_index("ix_callback_signatures_received_at", "callback_signatures", ["received_at"])


def downgrade() -> None:
    op.drop_table("callback_signatures")
