"""The embedded stack as `make dev` starts it, in a temporary directory, on free ports.

Embedded PostgreSQL (`devstack.postgres`) in a temporary data directory, the Temporal dev server
from `devstack.temporal` with a database file and its UI on free ports, the migrations, the
seed (admin and sample templates, as `provisio dev`), then three child processes: the API as
`python -m cli api` (uvicorn, exactly `provisio api`), the product worker (`bench.worker`:
`worker.build_worker` with the bench runner) and the baseline worker. Separate processes, so
that their RSS and CPU are measured per process.

The API runs `api_processes` processes on its port (1 unless asked: the scenarios measure the
API as one process) and the product worker `worker_processes` processes (`worker`, `worker-2`,
…, all polling the same task queue). While the stack runs, `start_api` adds another API with a
process count of its own on another port, and `set_workers` changes the number of product
workers (the scaling scenario).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from db.migrate import upgrade
from db.models import Template, User
from db.session import create_engine, create_sessionmaker
from devstack import temporal
from devstack.postgres import EmbeddedPostgres
from devstack.seed import (
    SAMPLE_TEMPLATES,
    ensure_admin,
    ensure_sample_templates,
    ensure_user,
    template_from_spec,
)
from settings import PROJECT_ROOT
from vocabulary.users import Role

OPERATOR = "bench-operator"
# Held deployments (launch latency, callback ingestion) must not poll the runner while the
# bench runs: the workflow's poll interval is max(30 s, timeout / 500).
HOLD_TEMPLATE = "bench-hold"
HOLD_TIMEOUT_S = 86_400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class BenchStack:
    keep: bool = False
    temporal_file: bool = False
    api_processes: int = 1
    worker_processes: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="provisio-bench-")))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    callback_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    database_url: str = ""
    temporal_address: str = ""
    api_url: str = ""
    children: dict[str, Child] = field(default_factory=dict)
    template_ids: dict[str, int] = field(default_factory=dict)
    _postgres: EmbeddedPostgres | None = None
    _temporal: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict)
    # Every API the stack runs: name → (URL, processes); "api" is the stack's own.
    apis: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def asyncpg_dsn(self) -> str:
        """The same database for raw asyncpg (the baselines, the bulk load)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._postgres = EmbeddedPostgres(self.root / "postgres", delete_on_stop=True)
        self.database_url = self._postgres.ensure_database("provisio")
        port, ui_port = free_port(), free_port()
        self._temporal = temporal.start_dev_server(
            db_file=self.root / "temporal.db" if self.temporal_file else None,
            port=port,
            ui_port=ui_port,
            log_file=self.logs / "temporal.log",
        )
        self.temporal_address = f"127.0.0.1:{port}"
        upgrade(self.database_url)
        self.template_ids = asyncio.run(self._seed())

        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        env = {
            **os.environ,
            "PROVISIO_DATABASE_URL": self.database_url,
            "PROVISIO_TEMPORAL_ADDRESS": self.temporal_address,
            "PROVISIO_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
            "PROVISIO_SECRET_KEY": self.secret_key,
            "PROVISIO_CALLBACK_SECRET": self.callback_secret,
            # The reads scenario's HTTP floor is GET /docs.
            "PROVISIO_API_DOCS": "true",
            "PROVISIO_API_HOST": "127.0.0.1",
            "PROVISIO_API_PORT": str(api_port),
            "PROVISIO_PUBLIC_URL": self.api_url,
            "PROVISIO_DATA_DIR": str(self.root),
            "PROVISIO_SANDBOX_ROOT": str(self.root / "sandbox"),
            "PROVISIO_RUNNER_DIR": str(self.root / "runs"),
            # The bench's operator launches hundreds: it measures orchestration, not quotas.
            "PROVISIO_QUOTA_OPERATOR_MAX_ACTIVE_DEPLOYMENTS": "unlimited",
            "PROVISIO_QUOTA_OPERATOR_MAX_TOTAL_GB": "unlimited",
            "PYTHONUNBUFFERED": "1",
        }
        self._env = env
        ready = {name: self._ready_file(name) for name in ("worker", "baseline-worker")}
        self._spawn("worker", ["-m", "bench.worker", "--ready-file", str(ready["worker"])], env)
        self._spawn(
            "baseline-worker",
            ["-m", "bench.worker", "--baseline", "--ready-file", str(ready["baseline-worker"])],
            env,
        )
        self._spawn_api("api", api_port, self.api_processes)
        workers, self.worker_processes = self.worker_processes, 1
        self._wait_ready(ready)
        self.set_workers(workers)

    # -- process counts ----------------------------------------------------------------------

    def start_api(self, name: str, processes: int) -> str:
        """Another API, `processes` processes on a port of its own, beside the stack's (the same
        database, Temporal and secrets); its URL. An idle API costs nothing to the other."""
        url = self._spawn_api(name, free_port(), processes)
        self._wait_ready({})
        return url

    def stop_api(self, name: str) -> None:
        self.stop_child(name)
        del self.children[name], self.apis[name]

    def set_workers(self, processes: int) -> None:
        """Start or stop product worker processes until `processes` poll the task queue. The
        bench runner keeps its runs in its process, and a run's status is asked on the shared
        queue: fine while a run's callback ends it long before its first status check (30 s)."""
        if processes < 1:
            raise ValueError("at least one product worker")
        for extra in range(processes + 1, self.worker_processes + 1):
            self.stop_child(f"worker-{extra}")
            del self.children[f"worker-{extra}"]
        ready = {}
        for extra in range(self.worker_processes + 1, processes + 1):
            name = f"worker-{extra}"
            ready[name] = self._ready_file(name)
            ready[name].unlink(missing_ok=True)
            self._spawn(name, ["-m", "bench.worker", "--ready-file", str(ready[name])], self._env)
        self.worker_processes = processes
        self._wait_ready(ready)

    def api_serving_processes(self, name: str = "api") -> list[psutil.Process]:
        """The processes that answer an API's port: the API itself, or the processes its
        supervisor spawned (`provisio api` with several)."""
        api = self.process(name)
        if self.apis[name][1] == 1:
            return [api]
        found = []
        for child in api.children():
            try:
                if "--multiprocessing-fork" in child.cmdline():
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def _api_serving(self, name: str) -> bool:
        """The API answers, and every one of its processes has finished its start-up (its
        Temporal client is connected: the last step of the app's lifespan before it serves)."""
        url, count = self.apis[name]
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
        temporal_port = int(self.temporal_address.rsplit(":", 1)[1])
        try:
            processes = self.api_serving_processes(name)
            return len(processes) == count and all(
                any(
                    conn.raddr and conn.raddr.port == temporal_port
                    for conn in process.net_connections("tcp")
                )
                for process in processes
            )
        except psutil.Error:
            return False

    def _spawn_api(self, name: str, port: int, processes: int) -> str:
        url = f"http://127.0.0.1:{port}"
        env = {
            **self._env,
            "PROVISIO_API_PORT": str(port),
            "PROVISIO_API_PROCESSES": str(processes),
        }
        if processes > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.root / f"{name}-metrics")
        self._spawn(name, ["-m", "cli", "api"], env)
        self.apis[name] = (url, processes)
        return url

    def _ready_file(self, name: str) -> Path:
        return self.root / f"{name}.ready"

    async def _seed(self) -> dict[str, int]:
        engine = create_engine(self.database_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            await ensure_admin(sessionmaker, self.admin_password)
            await ensure_sample_templates(sessionmaker)
            await ensure_user(sessionmaker, OPERATOR, self.operator_password, Role.OPERATOR)
            async with sessionmaker.begin() as session:
                admin = (await session.execute(User.__table__.select())).first()
                spec = SAMPLE_TEMPLATES[0]
                session.add(
                    template_from_spec(
                        spec,
                        name=HOLD_TEMPLATE,
                        configuration={
                            **spec["configuration"],
                            "provisio": {"callback_timeout_s": HOLD_TIMEOUT_S},
                        },
                        created_by=admin.id if admin else None,
                    )
                )
            async with sessionmaker() as session:
                rows = await session.execute(Template.__table__.select())
                return {row.name: row.id for row in rows}
        finally:
            await engine.dispose()

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self.logs / f"{name}.log"
        command = [sys.executable, *args]
        # The child writes through its own copy of the descriptor: ours is closed at once.
        with open(log, "ab") as output:
            process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
            )
        self.children[name] = Child(name, process, log)

    def _wait_ready(self, ready: dict[str, Path], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        serving: set[str] = set()
        while time.monotonic() < deadline:
            for child in self.children.values():
                if child.process.poll() is not None:
                    raise RuntimeError(
                        f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
                    )
            # Every process of every API serves, not only the first one up.
            serving |= {
                name for name in self.apis if name not in serving and self._api_serving(name)
            }
            if serving == set(self.apis) and all(path.exists() for path in ready.values()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the stack did not come up in {timeout_s}s; logs in {self.logs}")

    # -- measuring -----------------------------------------------------------------------------

    def process(self, name: str) -> psutil.Process:
        return psutil.Process(self.children[name].pid)

    def check_alive(self) -> None:
        for child in self.children.values():
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} died:\n{child.tail()}")

    def temporal_process(self) -> psutil.Process | None:
        return psutil.Process(self._temporal.pid) if self._temporal else None

    def postgres_processes(self) -> list[psutil.Process]:
        """The postmaster and its backends (their CPU adds up to the database's cost)."""
        found = []
        for proc in psutil.process_iter(["cmdline", "name"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if str(self.root / "postgres") in cmdline:
                found.append(proc)
                found.extend(proc.children(recursive=True))
        return found

    # -- stop --------------------------------------------------------------------------------

    def stop_child(self, name: str) -> None:
        child = self.children.get(name)
        if child is not None and child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(30)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def stop(self) -> None:
        for name in list(self.children)[::-1]:
            self.stop_child(name)
        if self._temporal is not None:
            temporal.stop(self._temporal)
            self._temporal = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
