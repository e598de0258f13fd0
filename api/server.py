"""How `provisio api` serves the app under uvicorn; the tests serve it the same way.

`api_processes` > 1: uvicorn's supervisor binds the port once and starts that many processes
that accept on the same socket, so one port answers for all of them. Each process builds its own
app (`_process_app`, a factory: engine, Temporal client, tracer, log handler of its own), and
nothing in the app's start-up writes: migrations and the first admin are done once, before, by
`provisio migrate` or the dev stack. The supervisor restarts a process that dies and stops them
all on SIGTERM or SIGINT; a process whose supervisor was killed outright stops too.

Prometheus: with several processes, prometheus_client's multiprocess mode (telemetry/api_metrics.py)
in `PROMETHEUS_MULTIPROC_DIR` (emptied here before any process starts; a private temporary
directory when unset), so `/metrics` from any process answers for all of them.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Linux's prctl(2) option: the signal a process gets when its parent ends.
PR_SET_PDEATHSIG = 1


def _uvicorn_options() -> dict[str, Any]:
    return {
        # Open event streams must not hold a shutdown for their whole lifetime.
        "timeout_graceful_shutdown": 5,
        # api/client_address.py reads the client's address, believing X-Forwarded-For only
        # from `trusted_proxies`; uvicorn's own reading would trust it from any local peer first.
        "proxy_headers": False,
        # uvicorn's loggers go to the root handler (telemetry/logs.py: JSON off a terminal)
        # instead of the handlers uvicorn would install, which would also stop their lines
        # from reaching the root handler.
        "log_config": None,
    }


def server_config(settings: Settings, *, host: str, port: int, **extra: object) -> uvicorn.Config:
    """One process serving `create_app(settings)`."""
    from api.app import create_app  # after the metrics directory is settled (`serve`)

    return uvicorn.Config(
        create_app(settings), host=host, port=port, **(_uvicorn_options() | extra)
    )


def processes_config(
    settings: Settings, *, host: str, port: int, processes: int, **extra: object
) -> uvicorn.Config:
    """`processes` processes, each building its app with `_process_app` (uvicorn pickles the
    config, settings included, to the processes it spawns)."""
    factory = functools.partial(_process_app, settings, os.getpid())
    options = _uvicorn_options() | {"factory": True, "workers": processes} | extra
    return uvicorn.Config(factory, host=host, port=port, **options)


def serve(settings: Settings, *, host: str, port: int, processes: int) -> None:
    """`provisio api`: serve until SIGTERM or SIGINT, with one process or `processes`."""
    from telemetry.tracing import configure_tracing

    if processes <= 1:
        if os.environ.get(MULTIPROC_DIR):  # multiprocess mode asked for even so: start clean
            _empty_metrics_directory(Path(os.environ[MULTIPROC_DIR]))
        configure_tracing(settings, "provisio-api")
        uvicorn.Server(server_config(settings, host=host, port=port)).run()
        return
    with _metrics_directory():
        config = processes_config(settings, host=host, port=port, processes=processes)
        sock = config.bind_socket()
        supervisor = APIProcesses(config, sockets=[sock])
        try:
            supervisor.run()
        finally:
            sock.close()
    if supervisor.startup_failed:
        sys.exit(STARTUP_FAILURE)


class APIProcesses(Multiprocess):
    """uvicorn's supervisor, which also tells prometheus_client when one of its processes ended
    (a live gauge, such as the open event streams, then stops counting it), and remembers when
    it stopped because a process failed to start (the app cannot start: exit non-zero)."""

    def __init__(self, config: uvicorn.Config, sockets: list[Any]) -> None:
        super().__init__(config, sockets)
        self.startup_failed = False
        self._pids: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        exiting = self.should_exit.is_set()
        super().keep_subprocess_alive()
        # It sets should_exit itself only when a process could not start.
        self.startup_failed |= not exiting and self.should_exit.is_set()
        self._forget_ended()

    def handle_signals(self) -> None:
        super().handle_signals()  # SIGHUP replaces every process, SIGTTOU removes one
        self._forget_ended()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.processes.clear()
            self._forget_ended()

    def pids(self) -> set[int]:
        return {process.pid for process in self.processes if process.pid is not None}

    def _forget_ended(self) -> None:
        from prometheus_client import multiprocess

        current = self.pids()
        for pid in self._pids - current:
            multiprocess.mark_process_dead(pid)
        self._pids = current


def _process_app(settings: Settings, supervisor_pid: int) -> FastAPI:
    """The app of one of several processes, built in that process (spawned: a fresh
    interpreter, so logging and tracing are set up here, as `provisio api` does for one)."""
    _stop_with(supervisor_pid)
    from telemetry.logs import configure_logging

    configure_logging()
    try:
        from api.app import create_app
        from telemetry.tracing import configure_tracing

        configure_tracing(settings, "provisio-api")
        return create_app(settings)
    except Exception:
        # The next process would fail alike: the supervisor stops on this exit code (any
        # other, it would start another process, forever).
        logging.getLogger("provisio.api").exception("the API cannot start")
        sys.exit(STARTUP_FAILURE)


def _stop_with(supervisor_pid: int) -> None:
    """SIGTERM this process when its supervisor ends. A supervisor that is killed outright
    cannot stop its processes, which would go on serving the port with nobody to restart or
    stop them."""
    if sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it ended before the request above
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def _metrics_directory() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR, emptied, for the processes to start with; a private temporary
    directory, removed at the end, when none is set."""
    configured = os.environ.get(MULTIPROC_DIR)
    if configured:
        directory = Path(configured)
        _empty_metrics_directory(directory)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="provisio-api-metrics-") as created:
        os.environ[MULTIPROC_DIR] = created
        try:
            yield Path(created)
        finally:
            del os.environ[MULTIPROC_DIR]


def _empty_metrics_directory(directory: Path) -> None:
    """Files of processes of an earlier run would be counted with this run's. Only
    prometheus_client's own files (*.db) go: the variable may name a shared directory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
