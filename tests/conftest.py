"""Session-scoped real PostgreSQL and Temporal dev server; per-test task queue, worker and API."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from api.security import hash_password
from api.server import server_config
from db.migrate import upgrade
from db.models import Template, TemplateDiskAllocation, User
from db.session import SessionMaker, create_engine, create_sessionmaker
from devstack import temporal
from devstack.postgres import EmbeddedPostgres
from settings import Settings
from tests import hang_report
from tests.doubles import RecordingRunnerDouble
from worker import build_worker

TABLES = (
    "callback_signatures, login_failures, deployment_history, disk_allocations, deployments,"
    " template_disk_allocations, templates, users"
)


def free_port() -> int:
    """A port free a moment ago. Someone else may take it before it is bound again: where the
    binder can take a socket, hand it `bound_socket()` instead; where a child process must bind
    it, retry on a bind failure (`start_temporal_dev_server`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_socket() -> socket.socket:
    """A loopback TCP socket bound to a port of its own and kept bound (not listening, so a
    connection to it is refused) until a server listens on it or it is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def start_temporal_dev_server(attempts: int = 3) -> tuple[subprocess.Popen[bytes], int]:
    """A Temporal dev server of our own on a free port. A port taken meanwhile makes the server
    exit; and when what took it is another dev server (another test session's), the health
    check is answered by that one, so the listener is checked to be ours. Then another port."""
    for attempt in range(attempts):
        port = free_port()
        try:
            process = temporal.start_dev_server(db_file=None, port=port, ui_port=None)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        if listens_on(process.pid, port):
            return process, port
        temporal.stop(process)
    raise RuntimeError(f"no Temporal dev server of our own after {attempts} ports")


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` (alive) is the one listening on `port`."""
    try:
        connections = psutil.Process(pid).net_connections("tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PROVISIO_DATABASE_URL when set (its database is used as is), else an embedded server."""
    if url := os.environ.get("PROVISIO_DATABASE_URL"):
        upgrade(url)
        yield url
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", delete_on_stop=True)
    url = server.ensure_database("provisio_test")
    upgrade(url)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    process, port = start_temporal_dev_server()
    yield f"127.0.0.1:{port}"
    temporal.stop(process)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return create_sessionmaker(engine)


@pytest.fixture(scope="session")
async def client(temporal_address: str) -> Client:
    return await Client.connect(temporal_address)


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        # The audit trail refuses TRUNCATE (append-only): its owner lifts that for a test.
        await conn.execute(
            text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_truncate")
        )
        await conn.execute(text("TRUNCATE audit_entries RESTART IDENTITY"))
        await conn.execute(
            text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_no_truncate")
        )


@pytest.fixture
def api_socket() -> Iterator[socket.socket]:
    """The port of `settings.public_url`, bound from the start: `live_api` serves on it."""
    sock = bound_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(
    database_url: str, temporal_address: str, clean_db: None, api_socket: socket.socket
) -> Settings:
    """Fresh tables and a task queue of this test's own."""
    return Settings(
        database_url=database_url,
        temporal_address=temporal_address,
        # Where `live_api` serves, for pipelines that call back over real HTTP.
        public_url=f"http://127.0.0.1:{api_socket.getsockname()[1]}",
        temporal_task_queue=f"test-{uuid.uuid4()}",
        secret_key="test-secret-key-0123456789abcdef-0123456789",
        callback_secret="test-callback-secret-0123456789abcdef-0123456789",
        pipeline_poll_interval_s=1,
        default_callback_timeout_s=300,
    )


@pytest.fixture
def runner() -> RecordingRunnerDouble:
    return RecordingRunnerDouble()


@pytest.fixture
async def worker(
    client: Client, settings: Settings, sessionmaker: SessionMaker, runner: RecordingRunnerDouble
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            yield


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def live_api(settings: Settings, api_socket: socket.socket) -> AsyncIterator[str]:
    """The API served by uvicorn on `settings.public_url`, for callers outside this process.
    Its start and stop are awaited, so the test's event loop (its worker) runs meanwhile."""
    import threading

    import uvicorn

    port = api_socket.getsockname()[1]
    config = server_config(settings, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    # On the socket bound since `settings` named its port: nobody else can have taken it.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [api_socket]}, daemon=True)
    thread.start()

    async def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        return server.started

    await wait_for(started, timeout_s=30, interval_s=0.05)
    yield settings.public_url
    server.should_exit = True
    await asyncio.to_thread(thread.join, 30)


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str
    headers: dict[str, str]


@pytest.fixture
async def make_user(sessionmaker: SessionMaker, api: httpx.AsyncClient) -> Any:
    async def make(role: str = "operator", username: str | None = None) -> Account:
        username = username or f"{role}-{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        async with sessionmaker.begin() as session:
            user = User(username=username, password_hash=hash_password(password), role=role)
            session.add(user)
            await session.flush()
            user_id = user.id
        response = await api.post(
            "/api/auth/token", data={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return Account(user_id, username, password, role, headers)

    return make


@pytest.fixture
async def make_template(sessionmaker: SessionMaker) -> Any:
    async def make(
        name: str = "postgres-small",
        *,
        is_active: bool = True,
        callback_timeout_s: int | None = None,
        failure_retention_s: int | None = None,
    ) -> int:
        configuration: dict[str, Any] = {"max_connections": 100, "listen": "localhost"}
        orchestration = {
            key: value
            for key, value in (
                ("callback_timeout_s", callback_timeout_s),
                ("failure_retention_s", failure_retention_s),
            )
            if value is not None
        }
        if orchestration:
            configuration["provisio"] = orchestration
        async with sessionmaker.begin() as session:
            template = Template(
                name=name,
                service_type="postgresql",
                configuration=configuration,
                is_active=is_active,
                disk_allocations=[
                    TemplateDiskAllocation(
                        disk_type="ssd",
                        size_gb=20,
                        mount_point="/data/pgdata",
                        volume_group="vg_data",
                        logical_volume="lv_pgdata",
                        filesystem_type="ext4",
                    ),
                    TemplateDiskAllocation(
                        disk_type="ssd",
                        size_gb=5,
                        mount_point="/data/pgwal",
                        volume_group="vg_data",
                        logical_volume="lv_pgwal",
                        filesystem_type="xfs",
                    ),
                ],
            )
            session.add(template)
            await session.flush()
            return template.id

    return make


async def wait_for(predicate: Any, timeout_s: float = 20, interval_s: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


HISTORIES = Path(__file__).parent / "fixtures" / "histories"


# The tests' session event loop, for the hang report (tests/hang_report.py).
_session_loop: asyncio.AbstractEventLoop | None = None


@pytest.fixture(scope="session", autouse=True)
async def _remember_the_session_loop() -> None:
    global _session_loop
    _session_loop = asyncio.get_running_loop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    stop = hang_report.watch(_session_loop, item.nodeid)
    try:
        return (yield)
    finally:
        stop()
