"""`provisio dev`: the whole embedded stack in the foreground; Ctrl-C stops every child."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from devstack import temporal
from devstack.host_tools import doctor
from devstack.postgres import EmbeddedPostgres
from devstack.seed import ensure_admin, ensure_sample_templates
from settings import Settings


def _secret_key(settings: Settings) -> str:
    """A stable key per data directory, so tokens and callback tokens survive restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


async def _seed(database_url: str, admin_password: str) -> bool:
    engine = create_engine(database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        created = await ensure_admin(sessionmaker, admin_password)
        await ensure_sample_templates(sessionmaker)
        return created
    finally:
        await engine.dispose()


def _spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    output = open(log, "ab")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen(
        [sys.executable, "-m", "cli", command],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


def run_dev_stack(settings: Settings) -> None:
    data_dir = settings.data_dir
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    postgres = None

    def stop_all(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_all)
    # A deployment must not be the first to find out that mkfs.xfs is missing.
    print("• Host tools", flush=True)
    if not doctor(settings, install_missing=True):
        raise SystemExit(1)
    try:
        database_url = settings.database_url
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            database_url = postgres.ensure_database("provisio")
        print("• PostgreSQL ready", flush=True)

        host, _, port = settings.temporal_address.rpartition(":")
        children.append(
            temporal.start_dev_server(
                db_file=data_dir / "temporal.db",
                ip=host,
                port=int(port),
                ui_port=8233,
                log_file=logs / "temporal.log",
            )
        )
        print("• Temporal dev server ready", flush=True)

        upgrade(database_url)
        admin_password = settings.admin_password or "admin"
        created = asyncio.run(_seed(database_url, admin_password))

        env = {
            **os.environ,
            "PROVISIO_DATABASE_URL": database_url,
            "PROVISIO_SECRET_KEY": _secret_key(settings),
        }
        children.append(_spawn("worker", env, logs / "worker.log"))
        children.append(_spawn("api", env, logs / "api.log"))

        credentials = admin_password if created else "(the password it was created with)"
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"""
Provisio is up.
  API + web UI   {base}   (docs: {base}/docs)
  Temporal UI    {settings.temporal_ui_url}
  Sign in        admin / {credentials}
  Logs           {logs}
Ctrl-C stops everything.""",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = next(child for child in children if child.poll() is not None)
        print(f"A child process exited ({failed.args!r}); stopping. See {logs}.", file=sys.stderr)
        raise SystemExit(1)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        for child in reversed(children):
            temporal.stop(child)
        if postgres is not None:
            postgres.stop()
