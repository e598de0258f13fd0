"""A temporalio runtime serving the worker's /metrics on a free port of the loopback."""

from __future__ import annotations

from temporalio.runtime import Runtime

from settings import Settings
from telemetry.worker_metrics import worker_runtime
from tests.conftest import free_port


def metrics_runtime(settings: Settings) -> tuple[Runtime, str]:
    """The runtime and its address; another port if the one picked was taken meanwhile (the
    runtime binds it itself, and refuses to start on a taken one)."""
    for _ in range(5):
        address = f"127.0.0.1:{free_port()}"
        serving = settings.model_copy(update={"worker_metrics_address": address})
        try:
            runtime = worker_runtime(serving)
        except ValueError:
            continue
        assert runtime is not None
        return runtime, address
    raise AssertionError("no free port for the worker's metrics")
