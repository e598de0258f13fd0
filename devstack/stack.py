"""`provisio dev`: the whole embedded stack in the foreground; Ctrl-C stops every child."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from devstack import temporal
from devstack.child_env import child_environment
from devstack.host_tools import doctor
from devstack.postgres import EmbeddedPostgres
from devstack.private_data import (
    make_private_dir,
    stable_secret,
    tighten_files,
    use_private_umask,
)
from devstack.seed import ensure_admin, ensure_sample_templates
from settings import Settings

# Where the dev stack's worker serves /metrics unless PROVISIO_WORKER_METRICS_ADDRESS says.
DEV_WORKER_METRICS_ADDRESS = "127.0.0.1:9464"
# prometheus_client's variable: where several API processes keep their metrics (api/server.py).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def process_environments(
    settings: Settings, database_url: str, base: dict[str, str]
) -> dict[str, dict[str, str]]:
    """The API's and the worker's environments, each with its own secrets only (the worker never
    gets the key that signs API tokens). Secrets are stable per data directory, so sign-ins and
    the callback tokens of running deployments survive a restart. The API runs
    `api_processes` processes on its port; with more than one, their metrics live in
    var/api-metrics (emptied by `provisio api` as it starts), which no other process writes."""
    data_dir = settings.data_dir
    base = {key: value for key, value in base.items() if key != MULTIPROC_DIR}
    callback_secret = stable_secret(settings.callback_secret, data_dir / "callback_secret")
    worker = {
        "database_url": database_url,
        "callback_secret": callback_secret,
        "worker_metrics_address": settings.worker_metrics_address or DEV_WORKER_METRICS_ADDRESS,
    }
    if settings.jenkins_token:
        worker["jenkins_token"] = settings.jenkins_token
    if settings.webhook_secret:  # the global webhook's (PROVISIO_WEBHOOK_URL passes as is)
        worker["webhook_secret"] = settings.webhook_secret
    # Webhook receivers on this machine or its network are what a developer tries first: allowed
    # here unless the user said otherwise (refused by default).
    allow_private = (
        settings.webhook_allow_private
        if "webhook_allow_private" in settings.model_fields_set
        else True
    )
    worker["webhook_allow_private"] = str(allow_private).lower()
    # Swagger UI at /docs is on here unless the user turned it off (it is off by default).
    api_docs = settings.api_docs if "api_docs" in settings.model_fields_set else True
    api = {
        "database_url": database_url,
        "secret_key": stable_secret(settings.secret_key, data_dir / "secret_key"),
        "callback_secret": callback_secret,
        "api_docs": str(api_docs).lower(),
        "webhook_allow_private": str(allow_private).lower(),
        "api_processes": str(settings.api_processes),
    }
    api_env = child_environment(base, api)
    if settings.api_processes > 1:
        api_env[MULTIPROC_DIR] = str(data_dir / "api-metrics")
    return {"worker": child_environment(base, worker), "api": api_env}


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
    # The child writes through its own copy of the descriptor: ours is closed at once.
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", command],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )


def run_dev_stack(settings: Settings) -> None:
    # var/ holds secrets, Temporal's database and logs: nothing in it is for other users.
    use_private_umask()
    data_dir = settings.data_dir
    logs = data_dir / "logs"
    make_private_dir(data_dir)
    make_private_dir(logs)
    tighten_files(data_dir)
    tighten_files(logs)
    for own in (settings.runner_dir, settings.sandbox_root):
        # Run directories (their env files hold callback tokens) and image files: an older
        # version made these 0755. Only inside var/: elsewhere they are the user's to set.
        if own.is_dir() and own.resolve().is_relative_to(data_dir.resolve()):
            make_private_dir(own)
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
            # Run as root, embedded PostgreSQL opens the way to its data for its own user (it
            # makes every parent directory world-readable): let that user, and no other, pass.
            make_private_dir(data_dir, traversed_by=postgres.system_user)
            database_url = postgres.ensure_database("provisio")
        print("• PostgreSQL ready", flush=True)

        host, _, port = settings.temporal_address.rpartition(":")
        children.append(
            temporal.start_dev_server(
                db_file=data_dir / "temporal.db",
                ip=host,
                port=int(port),
                # Where the stack says the UI is (PROVISIO_TEMPORAL_UI_URL); on the loopback only.
                ui_port=urlsplit(settings.temporal_ui_url).port or 8233,
                log_file=logs / "temporal.log",
            )
        )
        print("• Temporal dev server ready", flush=True)

        upgrade(database_url)
        admin_password = settings.admin_password or "admin"
        created = asyncio.run(_seed(database_url, admin_password))

        environments = process_environments(settings, database_url, dict(os.environ))
        children.append(_spawn("worker", environments["worker"], logs / "worker.log"))
        children.append(_spawn("api", environments["api"], logs / "api.log"))

        credentials = admin_password if created else "(the password it was created with)"
        base = f"http://{settings.api_host}:{settings.api_port}"
        processes = int(environments["api"]["PROVISIO_API_PROCESSES"])
        served_by = f"   ({processes} processes)" if processes > 1 else ""
        with_docs = environments["api"]["PROVISIO_API_DOCS"] == "true"
        docs = f"   (docs: {base}/docs)" if with_docs else ""
        worker_metrics = environments["worker"]["PROVISIO_WORKER_METRICS_ADDRESS"]
        print(
            f"""
Provisio is up.
  API + web UI   {base}{docs}{served_by}
  Temporal UI    {settings.temporal_ui_url}
  Metrics        {base}/metrics   http://{worker_metrics}/metrics
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
        # A second Ctrl-C or SIGTERM while stopping would end this loop half-way and leave the
        # rest running (the worker, Temporal, PostgreSQL): it is already stopping.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            temporal.stop(child)
        if postgres is not None:
            postgres.stop()
