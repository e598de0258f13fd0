"""Apply Alembic migrations programmatically (CLI, dev stack, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from settings import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: env.py runs its own event loop, so call this outside a running loop."""
    command.upgrade(alembic_config(database_url), revision)
