"""The embedded stack keeps var/ to its user, and gives each process only its own secrets.

Attacks: a data directory, Temporal database and logs left world-readable by an older version; a
secret file readable for an instant after it is written; a JWT key the user exported, which the
worker must still not receive. The last test runs the real `provisio dev` and reads what its
children were really given (/proc/<pid>/environ) and the modes of what they really wrote.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import psutil
import pytest

from devstack.child_env import SECRET_SETTINGS
from devstack.private_data import make_private_dir, stable_secret, tighten_files
from devstack.stack import process_environments
from settings import Settings
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
DATABASE_URL = "postgresql+asyncpg://postgres@/provisio?host=/tmp/nowhere"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_secret_setting_is_withheld_unless_given() -> None:
    assert {"secret_key", "callback_secret", "jenkins_token", "admin_password"} <= SECRET_SETTINGS


def test_a_new_secret_file_is_never_readable_by_others(tmp_path: Path) -> None:
    previous = os.umask(0)  # the most open umask: the mode must not come from it
    try:
        secret = stable_secret("", tmp_path / "callback_secret")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "callback_secret") == 0o600
    assert len(secret) >= 32
    assert stable_secret("", tmp_path / "callback_secret") == secret
    assert stable_secret("configured-" + "x" * 32, tmp_path / "callback_secret") != secret


def test_what_an_older_version_left_open_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    for name in ("temporal.db", "secret_key", "logs/api.log"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    make_private_dir(data)
    tighten_files(data)
    tighten_files(data / "logs")
    assert mode(data) == 0o700
    assert mode(data / "temporal.db") == mode(data / "secret_key") == 0o600
    assert mode(data / "logs" / "api.log") == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands var/ to another user's group")
def test_as_root_var_is_passable_by_the_postgres_user_group_only(tmp_path: Path) -> None:
    user = pwd.getpwuid(65534).pw_name  # nobody: some user other than us
    make_private_dir(tmp_path / "var", traversed_by=user)
    info = (tmp_path / "var").stat()
    assert stat.S_IMODE(info.st_mode) == 0o710
    assert info.st_gid == pwd.getpwnam(user).pw_gid


def test_the_worker_gets_no_jwt_key_even_when_the_user_exported_one(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "PROVISIO_SECRET_KEY": "exported-jwt-key-" + "k" * 32,
        "provisio_secret_key": "exported-jwt-key-lowercase-" + "k" * 32,
        "PROVISIO_ADMIN_PASSWORD": "first-admin",
    }
    settings = Settings(data_dir=tmp_path, secret_key=base["PROVISIO_SECRET_KEY"])
    envs = process_environments(settings, DATABASE_URL, base)
    worker, api = envs["worker"], envs["api"]
    assert not {key for key in worker if key.upper() == "PROVISIO_SECRET_KEY"}
    assert not {key for key in api if key.upper() == "PROVISIO_SECRET_KEY"} - {
        "PROVISIO_SECRET_KEY"
    }
    assert api["PROVISIO_SECRET_KEY"] == base["PROVISIO_SECRET_KEY"]
    assert worker["PROVISIO_CALLBACK_SECRET"] == api["PROVISIO_CALLBACK_SECRET"]
    assert worker["PROVISIO_CALLBACK_SECRET"] != api["PROVISIO_SECRET_KEY"]
    for env in (worker, api):
        assert "PROVISIO_ADMIN_PASSWORD" not in env
        assert env["PROVISIO_DATABASE_URL"] == DATABASE_URL and env["PATH"] == "/usr/bin"
    assert mode(tmp_path / "callback_secret") == 0o600
    # Swagger UI is on in the dev stack unless the user turned it off.
    assert api["PROVISIO_API_DOCS"] == "true" and "PROVISIO_API_DOCS" not in worker
    off = Settings(data_dir=tmp_path, api_docs=False)
    assert process_environments(off, DATABASE_URL, base)["api"]["PROVISIO_API_DOCS"] == "false"


# --- the real stack -------------------------------------------------------------------------


def child_running(stack: psutil.Process, command: str) -> psutil.Process:
    for child in stack.children(recursive=True):
        if child.cmdline()[-3:] == ["-m", "cli", command]:
            return child
    raise LookupError(command)


def environ_of(process: psutil.Process) -> dict[str, str]:
    raw = Path(f"/proc/{process.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def get_when_up(url: str, timeout_s: float = 60) -> httpx.Response:
    """The stack says it is up once it started the API, which then takes a moment to listen."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=10)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class PortTaken(Exception):
    """A port the stack was given was taken by someone else before its child bound it."""


def older_var(root: Path) -> Path:
    """A data directory as an older version left it: open to others."""
    data = root / "var"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    (data / "logs" / "temporal.log").write_text("")
    (data / "logs" / "temporal.log").chmod(0o644)
    (data / "runs").mkdir(mode=0o755)
    return data


def stack_environment(data: Path) -> dict[str, str]:
    api_port, temporal_port, ui_port, metrics_port = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "PROVISIO_DATA_DIR": str(data),
        "PROVISIO_RUNNER_DIR": str(data / "runs"),
        "PROVISIO_SANDBOX_ROOT": str(data / "sandbox"),
        "PROVISIO_API_PORT": str(api_port),
        "PROVISIO_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "PROVISIO_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "PROVISIO_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "PROVISIO_WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        # Exported by the user: the API must get it, the worker must not.
        "PROVISIO_SECRET_KEY": "exported-jwt-key-0123456789abcdef-0123456789",
    }
    env.pop("PROVISIO_DATABASE_URL", None)
    return env


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def stack_ports(env: dict[str, str]) -> set[int]:
    """The API's, Temporal's, its UI's and the worker's metrics ports."""
    return {
        int(env["PROVISIO_API_PORT"]),
        port_of(env["PROVISIO_TEMPORAL_ADDRESS"]),
        port_of(env["PROVISIO_TEMPORAL_UI_URL"]),
        port_of(env["PROVISIO_WORKER_METRICS_ADDRESS"]),
    }


def unready_ports(stack: subprocess.Popen[str], ports: set[int]) -> set[int]:
    """The ports our stack's processes do not listen on yet. Raises PortTaken when another
    process listens on one: that one, not ours, would answer the test."""
    listeners = {
        (conn.laddr.port, conn.pid)
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }
    # Read after the listeners: a process that listened is already among them.
    ours = {stack.pid, *(child.pid for child in psutil.Process(stack.pid).children(True))}
    if foreign := {port for port, pid in listeners if pid not in ours}:
        raise PortTaken(f"ports {sorted(foreign)} are another process's")
    return ports - {port for port, _ in listeners}


def stack_failed(reason: str, output: list[str], data: Path) -> NoReturn:
    """Fails the test; raises PortTaken instead when the stack or a child said a port was in
    use (`provisio dev` itself, uvicorn, the Temporal server, the worker's metrics exporter)."""
    logs = {path.name: path.read_text() for path in sorted((data / "logs").glob("*.log"))}
    said = "".join(output) + "".join(logs.values())
    if "already in use" in said.lower():
        raise PortTaken(said)
    pytest.fail(f"{reason}: {''.join(output)}\n{logs}")


def read_output(stack: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """On a thread, so that a stack that hangs silently still meets the deadlines."""
    assert stack.stdout is not None
    with stack.stdout:
        for line in stack.stdout:
            lines.put(line)


def stack_exited(
    stack: subprocess.Popen[str],
    reader: threading.Thread,
    lines: queue.Queue[str],
    output: list[str],
    data: Path,
) -> NoReturn:
    """With everything it said: its last lines may still be on their way."""
    reader.join(30)
    while not lines.empty():
        output.append(lines.get())
    stack_failed(f"the dev stack exited ({stack.returncode})", output, data)


def wait_until_up(
    stack: subprocess.Popen[str],
    reader: threading.Thread,
    lines: queue.Queue[str],
    env: dict[str, str],
    data: Path,
) -> None:
    """Until the stack says it is up and its children listen on every port it was given."""
    output: list[str] = []
    deadline = time.monotonic() + 240
    while not output or not output[-1].startswith("Provisio is up."):
        if stack.poll() is not None:
            stack_exited(stack, reader, lines, output, data)
        if time.monotonic() > deadline:
            stack_failed("the dev stack did not come up", output, data)
        try:
            # Briefly: a stack that exited sends no more lines.
            output.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
    # It says so once it started the API and the worker, which then take a moment to listen.
    ports = stack_ports(env)
    deadline = time.monotonic() + 60
    while True:
        # Not reaped before its children are read (at worst a zombie then, which has none).
        if stack.poll() is not None:
            stack_exited(stack, reader, lines, output, data)
        if not (unready := unready_ports(stack, ports)):
            return
        if time.monotonic() > deadline:
            stack_failed(f"nothing of the stack listens on {sorted(unready)}", output, data)
        time.sleep(0.3)


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], Path]]:
    """`provisio dev` on ports of its own. Its children can only be given port numbers, which
    they bind themselves: a port taken between our pick and their bind is tried again with new
    ports and a new var/, only when the stack said a port was in use or another process listens
    on one of its ports, and every port is checked to be listened on by the stack's own."""
    attempts = 3
    for attempt in range(1, attempts + 1):
        data = older_var(tmp_path / f"attempt-{attempt}")
        env = stack_environment(data)
        stack = subprocess.Popen(
            [sys.executable, "-m", "cli", "dev"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=read_output, args=(stack, lines))
        reader.start()
        try:
            try:
                wait_until_up(stack, reader, lines, env, data)
            except PortTaken:
                if attempt == attempts:
                    raise
                continue
            yield stack, env, data
            return
        finally:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait()
            reader.join(30)


def test_the_real_dev_stack_keeps_var_private_and_the_jwt_key_from_the_worker(
    dev_stack: tuple[subprocess.Popen[str], dict[str, str], Path],
) -> None:
    stack, env, data = dev_stack
    process = psutil.Process(stack.pid)
    worker = environ_of(child_running(process, "worker"))
    api = environ_of(child_running(process, "api"))
    assert "PROVISIO_SECRET_KEY" not in worker
    assert api["PROVISIO_SECRET_KEY"] == env["PROVISIO_SECRET_KEY"]
    assert worker["PROVISIO_CALLBACK_SECRET"] == api["PROVISIO_CALLBACK_SECRET"]
    assert worker["PROVISIO_CALLBACK_SECRET"] == (data / "callback_secret").read_text().strip()

    # var/ is passable by nobody else (run as root, by the PostgreSQL user's group only).
    if os.geteuid() == 0:
        assert mode(data) == 0o710
        assert data.stat().st_gid == pwd.getpwnam("embedded_postgres").pw_gid
    else:
        assert mode(data) == 0o700
    assert mode(data / "logs") == mode(data / "runs") == 0o700
    written = [data / "temporal.db", data / "callback_secret", *(data / "logs").iterdir()]
    assert {path.name for path in written} >= {"api.log", "worker.log", "temporal.log"}
    for path in written:
        assert mode(path) == 0o600, path

    # The dev stack serves its docs, and its Temporal UI on the loopback.
    assert get_when_up(f"{env['PROVISIO_PUBLIC_URL']}/docs").status_code == 200
    ui_port = port_of(env["PROVISIO_TEMPORAL_UI_URL"])
    listening = {
        conn.laddr.ip
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == ui_port
    }
    assert listening == {"127.0.0.1"}


def test_the_real_dev_stack_serves_metrics_and_logs_json(
    dev_stack: tuple[subprocess.Popen[str], dict[str, str], Path],
) -> None:
    _, env, data = dev_stack
    # The API runs a process per core: their metrics, read from the files each one writes, list
    # the request histogram once one of them has timed a request.
    get_when_up(f"{env['PROVISIO_PUBLIC_URL']}/openapi.json")
    deadline = time.monotonic() + 10
    while (
        "provisio_http_request_duration_seconds"
        not in (api := get_when_up(f"{env['PROVISIO_PUBLIC_URL']}/metrics")).text
    ):
        assert time.monotonic() < deadline, api.text
        time.sleep(0.2)
    assert api.status_code == 200
    assert 'provisio_deployments{status="succeeded"}' in api.text
    worker = get_when_up(f"http://{env['PROVISIO_WORKER_METRICS_ADDRESS']}/metrics")
    assert worker.status_code == 200
    assert "temporal_" in worker.text
    # Its children write to files, not terminals: one JSON object per line.
    polling = [
        json.loads(line)
        for line in (data / "logs" / "worker.log").read_text().splitlines()
        if "worker polling" in line
    ]
    assert polling and polling[0]["logger"] == "provisio.worker", polling


def test_a_second_stop_signal_still_stops_everything(
    dev_stack: tuple[subprocess.Popen[str], dict[str, str], Path],
) -> None:
    """Ctrl-C pressed twice (or SIGTERM sent twice) while the stack stops: the second one used
    to end the stopping half-way, leaving the worker, Temporal and PostgreSQL running."""
    stack, _, data = dev_stack
    started = psutil.Process(stack.pid).children(recursive=True)
    assert {"api", "worker"} <= {
        word for child in started for word in child.cmdline() if word in ("api", "worker")
    }
    # As someone pressing Ctrl-C again and again until it is gone.
    deadline = time.monotonic() + 120
    while stack.poll() is None and time.monotonic() < deadline:
        stack.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    assert stack.poll() is not None
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [process.cmdline() for process in alive]
    assert not list(data.rglob("postmaster.pid"))
