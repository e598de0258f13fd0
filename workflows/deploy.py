"""DeployWorkflow: validate → record → disks → trigger → await callback → final status.

Deterministic and free of I/O. Activities are called through their signatures in
`vocabulary.activities`, so neither SQLAlchemy nor any runner library is imported into the
workflow sandbox.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from vocabulary.activities import DeploymentSteps, PipelineSteps
    from vocabulary.contracts import (
        DeployRequest,
        DeployResult,
        DisksAllocatedInput,
        PipelineFinished,
        PipelineStarted,
        RecordDeploymentInput,
        RecordRunInput,
        RecordStepInput,
        RejectDeploymentInput,
        StartPipelineInput,
        ValidatedDeployment,
    )
    from vocabulary.errors import REJECTIONS
    from vocabulary.runs import RunRef, RunState, RunStatus
    from vocabulary.statuses import DeploymentStatus as S
    from workflows import search_attributes as sa

# Database steps retry until the database is back: a deployment outlives an outage.
DB_STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
# A runner that keeps refusing to start a run fails the deployment with the reason.
TRIGGER: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
}
STATUS_CHECK: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=3),
}
# A runner may report the end a moment before the final callback lands: wait that long for it.
CALLBACK_GRACE = timedelta(seconds=30)
# Status checks while waiting are spread so that even a long wait keeps the history small.
MAX_STATUS_CHECKS = 500

Outcome = tuple[S, str, dict[str, Any]]


@workflow.defn
class DeployWorkflow:
    def __init__(self) -> None:
        self._status = S.PENDING
        self._started: PipelineStarted | None = None
        self._finished: PipelineFinished | None = None
        self._running_recorded = False
        self._check_timer: asyncio.Future[None] | None = None

    @workflow.run
    async def run(self, request: DeployRequest) -> DeployResult:
        deployment_id = request.deployment_id
        try:
            deployment = await self._validate(request)
            await self._record_deployment(request, deployment)
        except ApplicationError as rejection:
            # The API recorded the deployment: it must end, with the reason, not stay pending.
            await self._reject(deployment_id, rejection)
            raise
        try:
            return await self._provision(request, deployment)
        except ActivityError as error:
            # Retries are exhausted: the deployment must still end in a final status.
            reason = str(error.cause or error)
            await self._finish(deployment_id, (S.FAILED, f"Deployment failed: {reason}", {}))
            return DeployResult(deployment_id, S.FAILED, reason)

    @workflow.query
    def status(self) -> str:
        return self._status.value

    # --- the callback's signals ---------------------------------------------------------------

    @workflow.signal
    def pipeline_started(self, event: PipelineStarted) -> None:
        self._started = self._started or event

    @workflow.signal
    def pipeline_finished(self, event: PipelineFinished) -> None:
        self._finished = self._finished or event

    # --- steps --------------------------------------------------------------------------------

    async def _validate(self, request: DeployRequest) -> ValidatedDeployment:
        """The template may have changed since the API checked: this answer is the authority."""
        try:
            return await workflow.execute_activity_method(
                DeploymentSteps.validate_deployment, request, **DB_STEP
            )
        except ActivityError as error:
            raise _rejection(error) from None

    async def _record_deployment(
        self, request: DeployRequest, deployment: ValidatedDeployment
    ) -> None:
        """Finds the row the API recorded; writes it (same id) if the API died before its commit."""
        data = RecordDeploymentInput(
            deployment_id=request.deployment_id,
            workflow_id=workflow.info().workflow_id,
            user_id=request.user_id,
            deployment_name=request.deployment_name,
            deployment=deployment,
        )
        try:
            await workflow.execute_activity_method(
                DeploymentSteps.record_deployment, data, **DB_STEP
            )
        except ActivityError as error:
            raise _rejection(error) from None

    async def _reject(self, deployment_id: int, rejection: ApplicationError) -> None:
        errors = rejection.details[0] if rejection.details else []
        data = RejectDeploymentInput(deployment_id, rejection.message, errors)
        await workflow.execute_activity_method(DeploymentSteps.reject_deployment, data, **DB_STEP)
        self._set_status(S.FAILED)

    async def _provision(
        self, request: DeployRequest, deployment: ValidatedDeployment
    ) -> DeployResult:
        deployment_id = request.deployment_id
        await workflow.execute_activity_method(
            DeploymentSteps.record_disks_allocated,
            DisksAllocatedInput(deployment_id, deployment.disks),
            **DB_STEP,
        )
        self._set_status(S.PROVISIONING)

        start = StartPipelineInput(
            deployment_id, workflow.info().workflow_id, request.deployment_name, deployment
        )
        run = await workflow.execute_activity_method(PipelineSteps.start_pipeline, start, **TRIGGER)
        await workflow.execute_activity_method(
            DeploymentSteps.record_pipeline_triggered, RecordRunInput(deployment_id, run), **DB_STEP
        )
        self._set_status(S.QUEUED)

        timeout = timedelta(
            seconds=deployment.callback_timeout_s or request.default_callback_timeout_s
        )
        outcome = await self._await_outcome(request, run, timeout)
        await self._finish(deployment_id, outcome)
        status, message, _ = outcome
        return DeployResult(deployment_id, status, None if status == S.SUCCEEDED else message)

    async def _await_outcome(
        self, request: DeployRequest, run: RunRef, timeout: timedelta
    ) -> Outcome:
        """Wait for the final callback, watching the runner; bounded by `timeout`."""
        deployment_id = request.deployment_id
        deadline = workflow.now() + timeout
        poll = max(timedelta(seconds=request.poll_interval_s), timeout / MAX_STATUS_CHECKS)
        runner_ended_at = None
        while True:
            if self._started is not None and not self._running_recorded:
                step = RecordStepInput(
                    deployment_id, "running", S.RUNNING, "Playbook started", self._started.details
                )
                await workflow.execute_activity_method(DeploymentSteps.record_step, step, **DB_STEP)
                self._set_status(S.RUNNING)
                self._running_recorded = True
            if self._finished is not None:
                return _outcome_of(self._finished)
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                await self._cancel_run(run)
                return S.TIMED_OUT, f"No result within {int(timeout.total_seconds())}s", {}
            if not await self._wait_for_signal_or_check(min(poll, remaining)):
                continue
            status = await self._check_run(run)
            if status is not None and status.ref is not None:
                run = status.ref
                await workflow.execute_activity_method(
                    DeploymentSteps.record_pipeline_run,
                    RecordRunInput(deployment_id, run),
                    **DB_STEP,
                )
            if status is None or not status.state.is_final:
                continue
            # The run is over but its final callback has not come: give it a moment, then
            # take the runner's word for the result.
            runner_ended_at = runner_ended_at or workflow.now()
            if workflow.now() - runner_ended_at < min(CALLBACK_GRACE, 2 * poll):
                continue
            if status.state == RunState.SUCCEEDED:
                return _outcome_of(PipelineFinished(True, status.stats or {}))
            reason = status.reason or f"pipeline run {status.state}"
            message = f"Pipeline {status.state} before reporting: {reason}"
            return S.FAILED, message, {"job_id": run.job_id, "reason": reason}

    def _signal_to_handle(self) -> bool:
        return self._finished is not None or (
            self._started is not None and not self._running_recorded
        )

    async def _wait_for_signal_or_check(self, delay: timedelta) -> bool:
        """Wait for a signal to handle or for the next status check; True when the check is due.

        One timer serves each check across signals, so signals do not add timers to history."""
        if self._check_timer is None:
            self._check_timer = asyncio.ensure_future(workflow.sleep(delay))
        timer = self._check_timer
        await workflow.wait_condition(lambda: self._signal_to_handle() or timer.done())
        if not timer.done():
            return False
        self._check_timer = None
        return True

    async def _finish(self, deployment_id: int, outcome: Outcome) -> None:
        status, message, details = outcome
        step = RecordStepInput(deployment_id, "result", status, message, details)
        await workflow.execute_activity_method(DeploymentSteps.record_step, step, **DB_STEP)
        self._set_status(status)

    async def _check_run(self, run: RunRef) -> RunStatus | None:
        try:
            return await workflow.execute_activity_method(
                PipelineSteps.pipeline_status, run, **STATUS_CHECK
            )
        except ActivityError:
            return None  # the runner is unreachable: keep waiting; the timeout still holds

    async def _cancel_run(self, run: RunRef) -> None:
        try:
            await workflow.execute_activity_method(
                PipelineSteps.cancel_pipeline, run, **STATUS_CHECK
            )
        except ActivityError:
            workflow.logger.warning("could not cancel pipeline run %s", run.job_id)

    def _set_status(self, status: S) -> None:
        self._status = status
        workflow.upsert_search_attributes([sa.DEPLOYMENT_STATUS.value_set(status.value)])


def _outcome_of(finished: PipelineFinished) -> Outcome:
    details: dict[str, Any] = {"stats": finished.stats}
    if finished.ok:
        return S.SUCCEEDED, "Deployment succeeded", details
    details["reason"] = finished.reason
    return S.FAILED, f"Deployment failed: {finished.reason or 'playbook failed'}", details


def _rejection(error: ActivityError) -> BaseException:
    """A permanent refusal (invalid input, a taken name) ends the workflow; anything else is
    left to propagate as it is."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type in REJECTIONS:
        return ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True)
    return error
