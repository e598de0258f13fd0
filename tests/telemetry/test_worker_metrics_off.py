"""Without a metrics address the worker's runtime records nothing, so the activity interceptor
reads no deployment age from PostgreSQL either."""

from __future__ import annotations

from temporalio.common import MetricMeter
from temporalio.runtime import Runtime

from settings import Settings
from telemetry.worker_metrics import RunMetrics, worker_runtime
from tests.telemetry.metrics_runtime import metrics_runtime


def test_no_address_no_endpoint_and_nothing_recorded() -> None:
    assert worker_runtime(Settings(worker_metrics_address="")) is None
    assert RunMetrics.on(Runtime.default().metric_meter).recorded is False
    assert RunMetrics.on(MetricMeter.noop).recorded is False


def test_an_address_gives_a_runtime_whose_metrics_are_recorded() -> None:
    runtime, _ = metrics_runtime(Settings())
    assert RunMetrics.on(runtime.metric_meter).recorded is True
