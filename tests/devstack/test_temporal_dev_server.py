"""The dev server's UI (no sign-in, every write action) listens on the loopback only, even when the
frontend is given another address (the CLI's UI otherwise binds wherever the frontend does)."""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from devstack import temporal
from tests.conftest import free_port


def listening_addresses(port: int) -> set[str]:
    return {
        conn.laddr.ip
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    }


def test_the_ui_binds_127_0_0_1_whatever_the_frontend_address() -> None:
    # 127.0.0.2 is a loopback address too: nothing leaves the machine while this runs.
    for attempt in range(3):
        # Ports free a moment ago: one taken meanwhile makes the server exit; try others.
        port, ui_port = free_port(), free_port()
        try:
            server = temporal.start_dev_server(
                db_file=None, port=port, ui_port=ui_port, ip="127.0.0.2"
            )
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        assert listening_addresses(port) == {"127.0.0.2"}
        deadline = time.monotonic() + 30
        while not listening_addresses(ui_port) and time.monotonic() < deadline:
            time.sleep(0.2)  # the UI server starts beside the frontend, a moment later
        assert listening_addresses(ui_port) == {"127.0.0.1"}
    finally:
        temporal.stop(server)


def test_a_port_another_server_holds_is_refused_before_starting(
    temporal_address: str,
) -> None:
    """The session's server holds this port: a second start would exit while the first one
    answered its health check, and the stack would use a server that is not its own."""
    host, _, port = temporal_address.rpartition(":")
    with pytest.raises(RuntimeError, match="already in use"):
        temporal.start_dev_server(db_file=None, port=int(port), ip=host, ui_port=None)
    held_ui = socket.socket()
    held_ui.bind(("127.0.0.1", 0))
    held_ui.listen()
    with held_ui, pytest.raises(RuntimeError, match="already in use"):
        temporal.start_dev_server(db_file=None, port=free_port(), ui_port=held_ui.getsockname()[1])
