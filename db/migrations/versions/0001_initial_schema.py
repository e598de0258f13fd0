"""Initial schema: the six tables of the design with their additions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 16:02:11.351249
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('admin', 'operator', 'viewer')", name="users_role_valid"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("service_type", sa.String(length=64), nullable=False),
        sa.Column(
            "configuration",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="templates_name_version_key"),
    )
    op.create_index(op.f("ix_templates_created_by"), "templates", ["created_by"], unique=False)
    op.create_table(
        "deployments",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("deployment_name", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "configuration",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("jenkins_job_id", sa.String(length=255), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'provisioning', 'queued', 'running',"
            " 'succeeded', 'failed', 'timed_out', 'cancelled')",
            name="deployments_status_valid",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "deployment_name", name="deployments_user_name_key"),
        sa.UniqueConstraint("workflow_id"),
    )
    op.create_index("ix_deployments_status_id", "deployments", ["status", "id"], unique=False)
    op.create_index(
        op.f("ix_deployments_template_id"), "deployments", ["template_id"], unique=False
    )
    op.create_index("ix_deployments_user_id_id", "deployments", ["user_id", "id"], unique=False)
    op.create_table(
        "template_disk_allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("disk_type", sa.String(length=32), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("mount_point", sa.String(length=255), nullable=False),
        sa.Column("volume_group", sa.String(length=127), nullable=False),
        sa.Column("logical_volume", sa.String(length=127), nullable=False),
        sa.Column("filesystem_type", sa.String(length=16), server_default="ext4", nullable=False),
        sa.Column(
            "allocation_params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["template_id"], ["templates.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_template_disk_allocations_template_id"),
        "template_disk_allocations",
        ["template_id"],
        unique=False,
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id", "event_key", name="deployment_history_event_key"),
    )
    op.create_table(
        "disk_allocations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("disk_type", sa.String(length=32), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("mount_point", sa.String(length=255), nullable=False),
        sa.Column("volume_group", sa.String(length=127), nullable=False),
        sa.Column("logical_volume", sa.String(length=127), nullable=False),
        sa.Column("filesystem_type", sa.String(length=16), nullable=False),
        sa.Column(
            "allocation_params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_disk_allocations_deployment_id"),
        "disk_allocations",
        ["deployment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_disk_allocations_deployment_id"), table_name="disk_allocations")
    op.drop_table("disk_allocations")
    op.drop_table("deployment_history")
    op.drop_index(
        op.f("ix_template_disk_allocations_template_id"), table_name="template_disk_allocations"
    )
    op.drop_table("template_disk_allocations")
    op.drop_index("ix_deployments_user_id_id", table_name="deployments")
    op.drop_index(op.f("ix_deployments_template_id"), table_name="deployments")
    op.drop_index("ix_deployments_status_id", table_name="deployments")
    op.drop_table("deployments")
    op.drop_index(op.f("ix_templates_created_by"), table_name="templates")
    op.drop_table("templates")
    op.drop_table("users")
