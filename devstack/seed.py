"""The embedded stack's admin user and two sample templates (idempotent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from api.security import hash_password
from db.models import Template, TemplateDiskAllocation, User
from db.session import SessionMaker
from vocabulary.users import Role

SAMPLE_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "postgres-small",
        "service_type": "postgresql",
        "configuration": {
            "max_connections": 100,
            "shared_buffers_mb": 256,
            "listen_addresses": "localhost",
            "provisio": {"callback_timeout_s": 1800},
        },
        "disks": [
            ("ssd", 20, "/data/pgdata", "vg_data", "lv_pgdata", "ext4"),
            ("ssd", 5, "/data/pgwal", "vg_data", "lv_pgwal", "xfs"),
        ],
    },
    {
        "name": "web-app",
        "service_type": "nginx",
        "configuration": {"worker_processes": 2, "server_name": "app.example.internal"},
        "disks": [("hdd", 10, "/srv/www", "vg_app", "lv_www", "ext4")],
    },
]


def template_from_spec(spec: dict[str, Any], **fields: Any) -> Template:
    """A version-1 Template (with its disks) from a SAMPLE_TEMPLATES entry; `fields` override."""
    values = {
        "name": spec["name"],
        "service_type": spec["service_type"],
        "configuration": spec["configuration"],
        "version": 1,
        **fields,
    }
    disks = [
        TemplateDiskAllocation(
            disk_type=disk_type,
            size_gb=size,
            mount_point=mount,
            volume_group=vg,
            logical_volume=lv,
            filesystem_type=fs,
        )
        for disk_type, size, mount, vg, lv, fs in spec["disks"]
    ]
    return Template(**values, disk_allocations=disks)


async def ensure_user(sessionmaker: SessionMaker, username: str, password: str, role: str) -> bool:
    """Create the user unless the username is taken. True when it was created."""
    async with sessionmaker.begin() as session:
        if await session.scalar(select(User.id).where(User.username == username)):
            return False
        session.add(User(username=username, password_hash=hash_password(password), role=role))
        return True


async def ensure_admin(sessionmaker: SessionMaker, password: str) -> bool:
    return await ensure_user(sessionmaker, "admin", password, Role.ADMIN)


async def ensure_sample_templates(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        admin_id = await session.scalar(select(User.id).where(User.username == "admin"))
        for spec in SAMPLE_TEMPLATES:
            exists = await session.scalar(
                select(Template.id).where(Template.name == spec["name"], Template.version == 1)
            )
            if exists:
                continue
            session.add(template_from_spec(spec, created_by=admin_id))
