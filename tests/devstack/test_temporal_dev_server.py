"""The dev server's UI (no sign-in, every write action) listens on the loopback only, even when the
frontend is given another address (the CLI's UI otherwise binds wherever the frontend does)."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import psutil
import pytest

from devstack import temporal
from tests.conftest import free_port


class PortTaken(Exception):
    """A port we picked was taken by another process before our server bound it."""


def listeners(port: int) -> dict[str, set[int]]:
    """Who listens on `port`: the addresses, and the process ids behind them."""
    found: dict[str, set[int]] = {}
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            found.setdefault(conn.laddr.ip, set()).add(conn.pid or 0)
    return found


def two_free_ports() -> tuple[int, int]:
    """Two different ports, each free a moment ago (two picks in a row may return one port)."""
    port = free_port()
    while (other := free_port()) == port:
        pass
    return port, other


def server_and_children(server: subprocess.Popen[bytes]) -> set[int]:
    try:
        return {server.pid, *(child.pid for child in psutil.Process(server.pid).children(True))}
    except psutil.NoSuchProcess:
        return set()


def held_by_another(ip: str, port: int) -> bool:
    """Whether another process holds `port` on `ip` (ours having exited): it cannot be bound."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return True
    return False


def start_on_new_ports() -> tuple[subprocess.Popen[bytes], int, int]:
    """The dev server, its frontend on 127.0.0.2 (a loopback address too: nothing leaves the
    machine), the frontend and UI on ports picked here. Raises PortTaken only when a port was
    taken between our pick and the server's bind: the start was refused as "already in use",
    or the server exited and another process holds one of its ports, or another process
    listens on one. Any other failure fails the test."""
    port, ui_port = two_free_ports()
    ports = [("127.0.0.2", port), ("127.0.0.1", ui_port)]
    try:
        server = temporal.start_dev_server(db_file=None, port=port, ui_port=ui_port, ip="127.0.0.2")
    except RuntimeError as error:
        # Its output is not kept (start_dev_server leaves a log file open): its exit is read
        # as a taken port only when another process now holds one of them.
        said = str(error)
        exited = "exited with" in said
        if "already in use" in said or (exited and any(held_by_another(*p) for p in ports)):
            raise PortTaken(said) from error
        raise
    try:
        deadline = time.monotonic() + 30
        # The UI server starts beside the frontend, a moment later.
        while not (listeners(port) and listeners(ui_port)):
            if server.poll() is not None:
                if any(held_by_another(*p) for p in ports):
                    raise PortTaken(f"the dev server exited ({server.returncode}), a port taken")
                pytest.fail(f"the dev server exited with {server.returncode}")
            if time.monotonic() > deadline:
                pytest.fail(f"nothing listens on the UI's port {ui_port} after 30 s")
            time.sleep(0.2)
        # Read after the listeners: a process that listened is already among them.
        ours = server_and_children(server)
        for taken in (port, ui_port):
            if foreign := set().union(*listeners(taken).values()) - ours:
                raise PortTaken(f"port {taken} is another process's ({sorted(foreign)})")
    except BaseException:
        temporal.stop(server)
        raise
    return server, port, ui_port


def test_the_ui_binds_127_0_0_1_whatever_the_frontend_address() -> None:
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            server, port, ui_port = start_on_new_ports()
            break
        except PortTaken:
            if attempt == attempts:
                raise
    try:
        assert set(listeners(port)) == {"127.0.0.2"}
        assert set(listeners(ui_port)) == {"127.0.0.1"}
    finally:
        temporal.stop(server)


def test_a_port_another_server_holds_is_refused_before_starting(
    temporal_address: str,
) -> None:
    """The session's server holds this port: a second start would exit while the first one
    answered its health check, and the stack would use a server that is not its own."""
    host, _, port = temporal_address.rpartition(":")
    with pytest.raises(RuntimeError, match=re.escape(f"{host}:{port} is already in use")):
        temporal.start_dev_server(db_file=None, port=int(port), ip=host, ui_port=None)
    held_ui = socket.socket()
    held_ui.bind(("127.0.0.1", 0))
    held_ui.listen()
    with held_ui:
        ui_port = held_ui.getsockname()[1]
        attempts = 3
        for attempt in range(1, attempts + 1):
            # The frontend's port is checked first: one taken meanwhile by another process is
            # refused for that port, not the UI's, and another one is tried.
            frontend_port = free_port()
            with pytest.raises(RuntimeError, match="already in use") as refused:
                temporal.start_dev_server(db_file=None, port=frontend_port, ui_port=ui_port)
            if f":{frontend_port} is already" in str(refused.value) and attempt < attempts:
                continue
            assert f"127.0.0.1:{ui_port} is already in use" in str(refused.value)
            break
