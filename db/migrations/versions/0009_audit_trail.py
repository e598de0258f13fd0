"""The audit trail: one row per admin action and per operation on a deployment, append-only in
the database itself (a trigger refuses UPDATE, DELETE and TRUNCATE).

The actor is copied (id, username, role at the time), not a foreign key: an entry outlives any
change to its user, and truncating users cascades nowhere near it.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIONS = (
    "user.create",
    "user.update",
    "template.create",
    "template.deactivate",
    "template.activate",
    "deployment.launch",
    "deployment.cancel",
    "deployment.destroy",
    "deployment.retry",
    "deployment.change",
    "deployment.lease",
    "deployment.approve",
    "deployment.reject",
)
TARGETS = ("user", "template", "deployment")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        # The moment the entry was written, not its transaction's start.
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("actor_username", sa.String(64), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("before", postgresql.JSONB(), nullable=True),
        sa.Column("after", postgresql.JSONB(), nullable=True),
        # A request that may be sent again (an Idempotency-Key) writes its entry once.
        sa.Column("request_key", sa.String(255), nullable=True, unique=True),
        sa.CheckConstraint(_one_of("action", ACTIONS), name="audit_entries_action_valid"),
        sa.CheckConstraint(_one_of("target_type", TARGETS), name="audit_entries_target_valid"),
    )
    # Newest first (id DESC) within each filter.
    op.create_index("ix_audit_entries_actor_id_id", "audit_entries", ["actor_id", "id"])
    op.create_index("ix_audit_entries_action_id", "audit_entries", ["action", "id"])
    op.create_index(
        "ix_audit_entries_target_id", "audit_entries", ["target_type", "target_id", "id"]
    )
    op.execute(
        """
        CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries"
        " FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()"
    )


def downgrade() -> None:
    op.drop_table("audit_entries")
    op.execute("DROP FUNCTION audit_entries_append_only()")
