"""A worker interceptor around every activity: its log lines carry the deployment's ids, and
the pipeline runs it starts and the outcomes it records are counted (telemetry/worker_metrics.py).
It reads the activities' typed inputs; the activities themselves know nothing of it."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from telemetry.logs import deployment_context
from telemetry.worker_metrics import RunMetrics
from vocabulary.contracts import RecordStepInput, StartPipelineInput
from vocabulary.statuses import FINAL_STATUSES, DeploymentStatus


class ActivityTelemetryInterceptor(Interceptor):
    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityTelemetry(next, self.metrics)


class _ActivityTelemetry(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: RunMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        data = input.args[0] if input.args else None
        deployment_id = getattr(data, "deployment_id", None)
        # Sync activities run on the thread pool inside a copy of this context: they see it too.
        with deployment_context(deployment_id, activity.info().workflow_id):
            result = await super().execute_activity(input)
        # Counted once the activity has done its work (a failed attempt counts nothing).
        if isinstance(data, StartPipelineInput):
            self._metrics.started.add(1, {"action": data.action.value})
        elif isinstance(data, RecordStepInput) and _ends_a_run(data.status):
            self._metrics.finished.add(1, {"outcome": data.status.value})
        return result


def _ends_a_run(status: DeploymentStatus) -> bool:
    return status in FINAL_STATUSES and status != DeploymentStatus.REJECTED
