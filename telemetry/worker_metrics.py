"""The worker's Prometheus endpoint: temporalio's runtime metrics (workflow and activity task
latencies, `temporal_activity_execution_latency` by activity type and its `temporal_local_…` twin
for the database steps, poller and slot gauges, ...)
and Provisio's own, all served by the SDK's core on `PROVISIO_WORKER_METRICS_ADDRESS`.

Provisio's metrics are made on the runtime's meter, so they share that one endpoint; they are
recorded by `telemetry/worker_interceptor.py` from the activities' inputs and results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from temporalio.client import Client
from temporalio.common import MetricCounter, MetricHistogramFloat, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from db.session import SessionMaker
from settings import Settings

DEPLOYMENT_DURATION = "provisio_deployment_duration_seconds"
# From seconds (a run refused early) to the longest callback timeouts.
DEPLOYMENT_DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600)

# A deployment's age in seconds (None if there is no such deployment).
DeploymentAge = Callable[[int], Awaitable[float | None]]


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
                histogram_bucket_overrides={DEPLOYMENT_DURATION: DEPLOYMENT_DURATION_BUCKETS},
            )
        )
    )


@dataclass(frozen=True)
class RunMetrics:
    """Pipeline runs, as the worker starts and ends them."""

    started: MetricCounter
    finished: MetricCounter
    duration: MetricHistogramFloat
    # False on a runtime without metrics: nothing is recorded, so nothing need be measured.
    recorded: bool

    @classmethod
    def on(cls, meter: MetricMeter) -> RunMetrics:
        return cls(
            recorded=meter is not MetricMeter.noop,
            started=meter.create_counter(
                "provisio_pipeline_runs_started", "Pipeline runs started, by action."
            ),
            finished=meter.create_counter(
                "provisio_pipeline_runs_finished",
                "Deployments that reached a settled or final status, by that status.",
            ),
            duration=meter.create_histogram_float(
                DEPLOYMENT_DURATION,
                "From a deployment's creation to its settled status (succeeded, failed, "
                "timed out), by that status.",
            ),
        )

    @classmethod
    def of(cls, client: Client) -> RunMetrics:
        """On the meter of the client's runtime (a no-op meter without metrics configured)."""
        runtime = client.service_client.config.runtime or Runtime.default()
        return cls.on(runtime.metric_meter)


def deployment_age_reader(sessionmaker: SessionMaker) -> DeploymentAge:
    """Reads a deployment's age in PostgreSQL (its clock wrote created_at): once per settled
    deployment, a primary-key lookup."""

    async def age(deployment_id: int) -> float | None:
        async with sessionmaker() as session:
            seconds = await session.scalar(
                text(
                    "SELECT extract(epoch FROM clock_timestamp() - created_at)"
                    " FROM deployments WHERE id = :id"
                ),
                {"id": deployment_id},
            )
        return float(seconds) if seconds is not None else None

    return age
