"""The worker's Prometheus endpoint: temporalio's runtime metrics (workflow and activity task
latencies, `temporal_activity_execution_latency` by activity type, poller and slot gauges, ...)
and Provisio's own, all served by the SDK's core on `PROVISIO_WORKER_METRICS_ADDRESS`.

Provisio's metrics are made on the runtime's meter, so they share that one endpoint; they are
recorded by `telemetry/worker_interceptor.py` from the activities' inputs and results.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import MetricCounter, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from settings import Settings


def worker_runtime(settings: Settings) -> Runtime | None:
    """A runtime that serves /metrics on the configured address; None (the default runtime, no
    endpoint) when none is configured. Durations in seconds, counters with `_total`, as
    Prometheus names them."""
    if not settings.worker_metrics_address:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=settings.worker_metrics_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )


@dataclass(frozen=True)
class RunMetrics:
    """Pipeline runs, as the worker starts and ends them."""

    started: MetricCounter
    finished: MetricCounter

    @classmethod
    def on(cls, meter: MetricMeter) -> RunMetrics:
        return cls(
            started=meter.create_counter(
                "provisio_pipeline_runs_started", "Pipeline runs started, by action."
            ),
            finished=meter.create_counter(
                "provisio_pipeline_runs_finished",
                "Deployments that reached a settled or final status, by that status.",
            ),
        )

    @classmethod
    def of(cls, client: Client) -> RunMetrics:
        """On the meter of the client's runtime (a no-op meter without metrics configured)."""
        runtime = client.service_client.config.runtime or Runtime.default()
        return cls.on(runtime.metric_meter)
