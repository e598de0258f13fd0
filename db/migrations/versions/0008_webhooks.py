"""Webhooks: a user's receiver URL and the secret that signs what it gets (both or neither).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("webhook_secret", sa.Text(), nullable=True))
    op.create_check_constraint(
        "users_webhook_signed", "users", "(webhook_url IS NULL) = (webhook_secret IS NULL)"
    )


def downgrade() -> None:
    op.drop_constraint("users_webhook_signed", "users", type_="check")
    op.drop_column("users", "webhook_secret")
    op.drop_column("users", "webhook_url")
