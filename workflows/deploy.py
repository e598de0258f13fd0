"""DeployWorkflow: validate → create → clone disks → trigger → await callback → final status.

Deterministic and free of I/O. Activities are called by name, so neither SQLAlchemy nor any
runner library is imported into the workflow sandbox.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.errors import DUPLICATE_NAME, VALIDATION_FAILED
    from workflows import search_attributes as sa
    from workflows.contracts import (
        CloneDisksInput,
        CreateDeploymentInput,
        DeploymentCreated,
        DeployRequest,
        DeployResult,
        PipelineFinished,
        PipelineRun,
        PipelineRunStatus,
        PipelineStarted,
        RecordStepInput,
        RecordTriggeredInput,
        RejectDeploymentInput,
        StartPipelineInput,
        ValidatedDeployment,
    )

# Database steps retry until the database is back: a deployment outlives an outage.
DB_STEP = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
# A runner that keeps refusing to start a run fails the deployment with the reason.
TRIGGER = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
}
STATUS_CHECK = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=3),
}
# A runner may report the end a moment before the final callback lands: wait that long for it.
CALLBACK_GRACE = timedelta(seconds=30)
# Status checks while waiting are spread so that even a long wait keeps the history small.
MAX_STATUS_CHECKS = 500


@workflow.defn
class DeployWorkflow:
    def __init__(self) -> None:
        self._deployment_id: int | None = None
        self._rejection: ApplicationError | None = None
        self._status = "pending"
        self._started: PipelineStarted | None = None
        self._finished: PipelineFinished | None = None
        self._running_recorded = False
        self._check_timer: asyncio.Future[None] | None = None

    @workflow.run
    async def run(self, request: DeployRequest) -> DeployResult:
        try:
            deployment = await self._validate(request)
            deployment_id = await self._create(request, deployment)
        except ApplicationError as rejection:
            self._rejection = rejection
            if request.deployment_id is not None:
                # The API recorded the deployment: it must end, with the reason, not stay pending.
                await self._reject(rejection)
            # Let a pending update (older API) answer with the errors before the workflow ends.
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        try:
            return await self._provision(request, deployment_id, deployment)
        except ActivityError as error:
            # Retries are exhausted: the deployment must still end in a final status.
            reason = str(error.cause or error)
            await self._finish(deployment_id, "failed", f"Deployment failed: {reason}", {})
            return DeployResult(deployment_id, "failed", reason)

    # --- the API's view ---------------------------------------------------------------------

    @workflow.update
    async def deployment_created(self) -> DeploymentCreated:
        """Completes when the deployment row exists, or fails with the validation errors."""
        await workflow.wait_condition(
            lambda: self._deployment_id is not None or self._rejection is not None
        )
        if self._deployment_id is None:
            assert self._rejection is not None
            raise ApplicationError(
                self._rejection.message,
                *self._rejection.details,
                type=self._rejection.type,
                non_retryable=True,
            )
        return DeploymentCreated(self._deployment_id, workflow.info().workflow_id)

    @workflow.query
    def status(self) -> str:
        return self._status

    # --- the callback's signals ---------------------------------------------------------------

    @workflow.signal
    def pipeline_started(self, event: PipelineStarted) -> None:
        self._started = self._started or event

    @workflow.signal
    def pipeline_finished(self, event: PipelineFinished) -> None:
        self._finished = self._finished or event

    # --- steps --------------------------------------------------------------------------------

    async def _validate(self, request: DeployRequest) -> ValidatedDeployment:
        deployment = await self._call(
            "validate_deployment", request, ValidatedDeployment, DB_STEP, rejections=True
        )
        if request.deployment_id is None:  # else the API set them when it started this run
            workflow.upsert_search_attributes(
                [
                    sa.TEMPLATE_NAME.value_set(deployment.template_name),
                    sa.SERVICE_TYPE.value_set(deployment.service_type),
                ]
            )
        return deployment

    async def _create(self, request: DeployRequest, deployment: ValidatedDeployment) -> int:
        data = CreateDeploymentInput(
            workflow_id=workflow.info().workflow_id,
            user_id=request.user_id,
            deployment_name=request.deployment_name,
            deployment=deployment,
        )
        deployment_id = await self._call("create_deployment", data, int, DB_STEP, rejections=True)
        self._deployment_id = deployment_id
        if deployment_id != request.deployment_id:
            workflow.upsert_search_attributes([sa.DEPLOYMENT_ID.value_set(deployment_id)])
        return deployment_id

    async def _reject(self, rejection: ApplicationError) -> None:
        errors = rejection.details[0] if rejection.details else []
        data = RejectDeploymentInput(workflow.info().workflow_id, rejection.message, errors)
        await self._call("reject_deployment", data, None, DB_STEP)
        self._set_status("failed")

    async def _provision(
        self, request: DeployRequest, deployment_id: int, deployment: ValidatedDeployment
    ) -> DeployResult:
        await self._call(
            "clone_disk_allocations",
            CloneDisksInput(deployment_id, deployment.disks),
            None,
            DB_STEP,
        )
        self._set_status("provisioning")

        start = StartPipelineInput(
            deployment_id, workflow.info().workflow_id, request.deployment_name, deployment
        )
        run = await self._call("start_pipeline", start, PipelineRun, TRIGGER)
        await self._call(
            "record_pipeline_triggered", RecordTriggeredInput(deployment_id, run), None, DB_STEP
        )
        self._set_status("queued")

        timeout = timedelta(
            seconds=deployment.callback_timeout_s or request.default_callback_timeout_s
        )
        status, message, details = await self._await_outcome(deployment_id, run, timeout, request)
        await self._finish(deployment_id, status, message, details)
        return DeployResult(deployment_id, status, None if status == "succeeded" else message)

    async def _await_outcome(
        self, deployment_id: int, run: PipelineRun, timeout: timedelta, request: DeployRequest
    ) -> tuple[str, str, dict[str, Any]]:
        """Wait for the final callback, watching the runner; bounded by `timeout`."""
        deadline = workflow.now() + timeout
        poll = max(timedelta(seconds=request.poll_interval_s), timeout / MAX_STATUS_CHECKS)
        runner_ended_at = None
        while True:
            if self._started is not None and not self._running_recorded:
                await self._record(
                    deployment_id, "running", "running", "Playbook started", self._started.details
                )
                self._set_status("running")
                self._running_recorded = True
            if self._finished is not None:
                return self._outcome_of(self._finished)
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                await self._cancel_run(run)
                return "timed_out", f"No result within {int(timeout.total_seconds())}s", {}
            if not await self._wait_for_signal_or_check(min(poll, remaining), request):
                continue
            status = await self._check_run(run)
            if status is not None and status.run is not None:
                run = status.run
                await self._call(
                    "record_pipeline_run", RecordTriggeredInput(deployment_id, run), None, DB_STEP
                )
            if status is None or status.state not in ("succeeded", "failed", "aborted", "missing"):
                continue
            # The run is over but its final callback has not come: give it a moment, then
            # take the runner's word for the result.
            runner_ended_at = runner_ended_at or workflow.now()
            if workflow.now() - runner_ended_at < min(CALLBACK_GRACE, 2 * poll):
                continue
            if status.state == "succeeded":
                return self._outcome_of(PipelineFinished(True, status.stats or {}))
            reason = status.reason or f"pipeline run {status.state}"
            return (
                "failed",
                f"Pipeline {status.state} before reporting: {reason}",
                {
                    "job_id": run.job_id,
                    "reason": reason,
                },
            )

    def _signal_to_handle(self) -> bool:
        return self._finished is not None or (
            self._started is not None and not self._running_recorded
        )

    async def _wait_for_signal_or_check(self, delay: timedelta, request: DeployRequest) -> bool:
        """Wait for a signal to handle or for the next status check; True when the check is due.

        From flow version 2 one timer serves each check across signals (before, every signal
        cancelled the timer and the next wait started another)."""
        if request.flow_version < 2:
            try:
                await workflow.wait_condition(self._signal_to_handle, timeout=delay)
                return False
            except TimeoutError:
                return True
        if self._check_timer is None:
            self._check_timer = asyncio.ensure_future(workflow.sleep(delay))
        timer = self._check_timer
        await workflow.wait_condition(lambda: self._signal_to_handle() or timer.done())
        if not timer.done():
            return False
        self._check_timer = None
        return True

    def _outcome_of(self, finished: PipelineFinished) -> tuple[str, str, dict[str, Any]]:
        details: dict[str, Any] = {"stats": finished.stats}
        if finished.ok:
            return "succeeded", "Deployment succeeded", details
        details["reason"] = finished.reason
        return "failed", f"Deployment failed: {finished.reason or 'playbook failed'}", details

    async def _finish(
        self, deployment_id: int, status: str, message: str, details: dict[str, Any]
    ) -> None:
        await self._record(deployment_id, "result", status, message, details)
        self._set_status(status)

    # --- plumbing -----------------------------------------------------------------------------

    async def _record(
        self, deployment_id: int, key: str, status: str, message: str, details: dict[str, Any]
    ) -> None:
        step = RecordStepInput(deployment_id, key, status, message, details)
        await self._call("record_step", step, None, DB_STEP)

    async def _check_run(self, run: PipelineRun) -> PipelineRunStatus | None:
        try:
            return await self._call("pipeline_status", run, PipelineRunStatus, STATUS_CHECK)
        except ActivityError:
            return None  # the runner is unreachable: keep waiting; the timeout still holds

    async def _cancel_run(self, run: PipelineRun) -> None:
        try:
            await self._call("cancel_pipeline", run, None, STATUS_CHECK)
        except ActivityError:
            workflow.logger.warning("could not cancel pipeline run %s", run.job_id)

    def _set_status(self, status: str) -> None:
        self._status = status
        workflow.upsert_search_attributes([sa.DEPLOYMENT_STATUS.value_set(status)])

    async def _call(
        self,
        name: str,
        arg: Any,
        result_type: type | None,
        options: dict[str, Any],
        *,
        rejections: bool = False,
    ) -> Any:
        """Run an activity by name; with `rejections`, its permanent refusals fail the workflow."""
        try:
            return await workflow.execute_activity(name, arg, result_type=result_type, **options)
        except ActivityError as error:
            cause = error.cause
            if rejections and isinstance(cause, ApplicationError):
                if cause.type in (VALIDATION_FAILED, DUPLICATE_NAME):
                    raise ApplicationError(
                        cause.message, *cause.details, type=cause.type, non_retryable=True
                    ) from None
            raise
