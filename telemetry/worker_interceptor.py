"""A worker interceptor around every activity: its log lines carry the deployment's ids, and
the pipeline runs it starts and the outcomes it records are counted (telemetry/worker_metrics.py),
a settled deployment's duration measured. It reads the activities' typed inputs; the activities
themselves know nothing of it."""

from __future__ import annotations

import logging
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from telemetry.logs import deployment_context
from telemetry.worker_metrics import DeploymentAge, RunMetrics
from vocabulary.contracts import RecordStepInput, StartPipelineInput
from vocabulary.statuses import FINAL_STATUSES, SETTLED_STATUSES, DeploymentStatus

log = logging.getLogger("provisio.telemetry")


class ActivityTelemetryInterceptor(Interceptor):
    def __init__(self, metrics: RunMetrics, deployment_age: DeploymentAge) -> None:
        self.metrics = metrics
        self.deployment_age = deployment_age

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityTelemetry(next, self.metrics, self.deployment_age)


class _ActivityTelemetry(ActivityInboundInterceptor):
    def __init__(
        self, next: ActivityInboundInterceptor, metrics: RunMetrics, deployment_age: DeploymentAge
    ) -> None:
        super().__init__(next)
        self._metrics = metrics
        self._deployment_age = deployment_age

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
            if data.status in SETTLED_STATUSES and self._metrics.recorded:
                await self._observe_duration(data)
        return result

    async def _observe_duration(self, step: RecordStepInput) -> None:
        # The step is recorded: a failed measurement must not fail (and so repeat) it.
        try:
            age = await self._deployment_age(step.deployment_id)
        except Exception as exc:
            log.warning("deployment duration not measured: %s", type(exc).__name__)
            return
        if age is not None:
            self._metrics.duration.record(age, {"outcome": step.status.value})


def _ends_a_run(status: DeploymentStatus) -> bool:
    return status in FINAL_STATUSES and status != DeploymentStatus.REJECTED
