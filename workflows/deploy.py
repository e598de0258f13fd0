"""DeployWorkflow: the life of one deployment, from its launch until nothing of it is left.

Provisioning: validate → record → disks → lease → trigger → await callback → settled status.
Then the workflow waits for operations (Updates with validators: cancel, destroy, retry, change
(resize, reconfigure), lease extension), for the end of a failed deployment's retention and for
its lease's warnings and end, and continues as new before its history grows large. It ends only
when the deployment is cancelled or destroyed (or refused at launch).

Deterministic and free of I/O. Activities are called through their signatures in
`vocabulary.activities`, so neither SQLAlchemy nor any runner library is imported into the
workflow sandbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutType,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as CallTimeout
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from vocabulary.activities import DeploymentSteps, PipelineSteps
    from vocabulary.approvals import (
        DEFAULT_APPROVAL_TIMEOUT_S,
        Approval,
        ApprovalDecided,
        ApprovalRequest,
        ApprovalState,
        make_plan,
    )
    from vocabulary.configuration import configuration_changes, describe_changes
    from vocabulary.contracts import (
        ChangeAccepted,
        ChangeRequest,
        DeploymentState,
        DeployRequest,
        DeployResult,
        DisksAllocatedInput,
        LeaseAccepted,
        LeaseRequest,
        OperationAccepted,
        OperationRequest,
        PipelineFinished,
        PipelineStarted,
        RecordApprovalInput,
        RecordDeploymentInput,
        RecordLeaseInput,
        RecordRunInput,
        RecordStepInput,
        RejectDeploymentInput,
        StartPipelineInput,
        ValidatedDeployment,
    )
    from vocabulary.disks import (
        DiskResize,
        DiskState,
        describe_resize,
        resize_errors,
        resized,
    )
    from vocabulary.errors import (
        APPROVAL_FORBIDDEN,
        CHANGE_REFUSED,
        LEASE_REFUSED,
        OPERATION_REFUSED,
        REJECTIONS,
    )
    from vocabulary.leases import (
        DEFAULT_LEASE_WARNINGS_S,
        Lease,
        describe_seconds,
        extension_error,
        extension_refusal,
        new_expiry,
        pending_warnings,
    )
    from vocabulary.notifications import (
        WebhookEvent,
        WebhookEventType,
        webhook_event_id,
        webhook_workflow_id,
    )
    from vocabulary.operations import ENTERED_FROM, Operation, change_refusal, refusal
    from vocabulary.runs import RunAction, RunHost, RunRef, RunState, RunStatus
    from vocabulary.statuses import DeploymentStatus as S
    from workflows import search_attributes as sa
    from workflows.webhook_delivery import WebhookDeliveryWorkflow

# Database steps are local activities: run by the worker that runs the workflow task, recorded
# as one marker each, with no task-queue round trip on the server (most of a deployment's
# orchestration cost). They are short, idempotent and need nothing of a particular host. They
# retry until the database is back: a deployment outlives an outage.
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
# Stopping a run waits for the runner to confirm it ended (the local runner escalates to SIGKILL).
STOP_RUN: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=120),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5),
}
# A runner may report the end a moment before the final callback lands: wait that long for it.
CALLBACK_GRACE = timedelta(seconds=30)
# Status checks while waiting are spread so that even a long wait keeps the history small.
MAX_STATUS_CHECKS = 500
# How long a stopped run may take to be reported ended before the cancel gives up (failed).
STOP_CONFIRM_TIMEOUT = timedelta(minutes=5)

Outcome = tuple[S, str, dict[str, Any]]
# What a settled deployment waits for besides operations (see `_next_due`).
RETENTION_ENDS, LEASE_WARNING, LEASE_ENDS = "retention", "lease-warning", "lease"


def _key(name: str, run: int) -> str:
    """A run's history event key: the first run keeps the plain step names."""
    return name if run == 1 else f"{name}:{run}"


@workflow.defn
class DeployWorkflow:
    @workflow.init
    def __init__(self, request: DeployRequest) -> None:
        self._request = request
        self._deployment: ValidatedDeployment | None = None
        self._status = S.PENDING
        self._attempt = 1
        self._runs = 0  # pipeline runs started so far (deploys, retries, teardowns)
        self._run: RunRef | None = None  # the latest run
        self._retained_until: datetime | None = None
        self._started: dict[int, PipelineStarted] = {}
        self._finished: dict[int, PipelineFinished] = {}
        self._check_timer: asyncio.Future[None] | None = None
        self._destroy_reason = ""
        self._host: RunHost | None = None  # where the runs live; chosen at the first run
        self._host_silent = False  # the host left a call untaken for host_answer_timeout_s
        self._lease: Lease | None = None
        self._approval: Approval | None = None
        self._plan_ready = False  # the plan of the approval asked for now is recorded
        self._built = False  # a deploy run started: there may be something to tear down
        # The change in progress, as history says it: its name, and what it made when it is done.
        self._change = _change_name(True, False)
        self._change_done = ""
        # Extensions record one at a time, so the stored expiry is always the latest.
        self._lease_lock = asyncio.Lock()
        if request.resume is not None:
            state = request.resume
            self._deployment = state.deployment
            self._status = state.status
            self._attempt = state.attempt
            self._runs = state.runs
            self._retained_until = state.retained_until
            self._host = state.host
            self._lease = state.lease
            self._approval = state.approval
            self._built = state.built

    @workflow.run
    async def run(self, request: DeployRequest) -> DeployResult:
        if request.resume is None:
            await self._launch()
        while not self._status.is_terminal:
            if self._status == S.CANCELLING:
                await self._cancel()
            elif self._status == S.DESTROYING:
                await self._destroy()
            elif self._status in (S.PENDING, S.PROVISIONING):
                await self._provision()
            elif self._status == S.UPDATING:
                await self._update()
            else:
                await self._settled()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DeployResult(request.deployment_id, self._status)

    @workflow.query
    def status(self) -> str:
        return self._status.value

    # --- operations ---------------------------------------------------------------------------

    @workflow.update
    async def cancel(self, request: OperationRequest) -> OperationAccepted:
        self._refuse_unless(Operation.CANCEL)  # the status may have moved since the validator
        if self._status != S.CANCELLING:
            reason = request.reason or "cancelled by the user"
            await self._step(
                "cancel-requested",
                S.CANCELLING,
                f"Cancel requested by {request.requested_by}",
                {"by": request.requested_by, "reason": reason},
            )
        return OperationAccepted(Operation.CANCEL, self._status)

    @cancel.validator
    def _validate_cancel(self, request: OperationRequest) -> None:
        self._refuse_unless(Operation.CANCEL)

    @workflow.update
    async def destroy(self, request: OperationRequest) -> OperationAccepted:
        self._refuse_unless(Operation.DESTROY)
        if self._status != S.DESTROYING:
            await self._begin_destroy(f"requested by {request.requested_by}", request.requested_by)
        return OperationAccepted(Operation.DESTROY, self._status)

    @destroy.validator
    def _validate_destroy(self, request: OperationRequest) -> None:
        self._refuse_unless(Operation.DESTROY)

    @workflow.update
    async def retry(self, request: OperationRequest) -> OperationAccepted:
        self._refuse_unless(Operation.RETRY)  # two retries at once: the second is refused
        self._attempt += 1
        self._retained_until = None
        await self._step(
            _key("retry", self._attempt),
            S.PROVISIONING,
            f"Retry requested by {request.requested_by} (attempt {self._attempt})",
            {"by": request.requested_by},
        )
        return OperationAccepted(Operation.RETRY, self._status)

    @retry.validator
    def _validate_retry(self, request: OperationRequest) -> None:
        self._refuse_unless(Operation.RETRY)

    @workflow.update
    async def change(self, request: ChangeRequest) -> ChangeAccepted:
        self._refuse_change(request)  # asked again: another change may have come in between
        deployment = self._validated()
        said: list[str] = []
        details: dict[str, Any] = {"by": request.requested_by}
        if request.disks:
            said.append(describe_resize(deployment.disks, request.disks))
            details["disks"] = [dataclasses.asdict(disk) for disk in request.disks]
        changes = self._configuration_changes(request)
        if changes:
            said.append(describe_changes(changes))
            details["configuration"] = changes
        self._change = _change_name(bool(request.disks), bool(changes))
        done = [f"{', '.join(c['key'] for c in changes)} set"] if changes else []
        # The deployment takes its new sizes and values now: the run deploys them, and so does
        # a retry after a failed change. The rows take them when a run made them (`_succeed`).
        self._deployment = dataclasses.replace(
            deployment,
            disks=resized(deployment.disks, request.disks),
            configuration={**deployment.configuration, **request.configuration},
        )
        if request.disks:
            sizes = self._validated().disks
            done.insert(0, ", ".join(f"{disk.mount_point} {disk.size_gb} GB" for disk in sizes))
        self._change_done = "; ".join(done)
        await self._step(
            _key("change-requested", self._runs + 1),
            S.UPDATING,
            f"{self._change} requested: {'; '.join(said)} by {request.requested_by}",
            details,
        )
        return ChangeAccepted(self._status)

    @change.validator
    def _validate_change(self, request: ChangeRequest) -> None:
        self._refuse_change(request)

    def _refuse_change(self, request: ChangeRequest) -> None:
        """The status (409), or the change itself (422: an unknown disk, a shrink, nothing that
        changes). The template's bounds, caps and overrides schema are the API's to check: the
        workflow holds the disks and the values."""
        reason = change_refusal(self._status)
        if reason is not None:
            raise ApplicationError(reason, type=OPERATION_REFUSED, non_retryable=True)
        errors = resize_errors(self._validated().disks, request.disks) if request.disks else []
        if not request.disks and not self._configuration_changes(request):
            msg = (
                "nothing to change: every value asked is the deployment's value now"
                if request.configuration
                else "name at least one disk to grow or one configuration value to set"
            )
            errors.append({"loc": ["body"], "msg": msg, "type": "unchanged"})
        if errors:
            message = "; ".join(error["msg"] for error in errors)
            raise ApplicationError(message, errors, type=CHANGE_REFUSED, non_retryable=True)

    def _configuration_changes(self, request: ChangeRequest) -> list[dict[str, Any]]:
        deployment = self._validated()
        return configuration_changes(
            deployment.configuration, request.configuration, deployment.secret_keys
        )

    @workflow.update
    async def approve(self, request: ApprovalRequest) -> ApprovalDecided:
        self._refuse_decision(request)  # asked again: another decision may have come first
        self._approval = Approval(
            ApprovalState.APPROVED, request.decided_by, workflow.now(), request.comment
        )
        said = f": {request.comment}" if request.comment else ""
        await self._record_approval(
            _key("approved", self._runs),
            S.PROVISIONING,
            f"Approved by {request.decided_by}{said}",
            {"by": request.decided_by, "comment": request.comment},
        )
        return ApprovalDecided(ApprovalState.APPROVED, self._status)

    @approve.validator
    def _validate_approval(self, request: ApprovalRequest) -> None:
        self._refuse_decision(request)

    @workflow.update
    async def reject(self, request: ApprovalRequest) -> ApprovalDecided:
        self._refuse_decision(request)
        self._approval = Approval(
            ApprovalState.REJECTED, request.decided_by, workflow.now(), request.comment
        )
        said = f": {request.comment}" if request.comment else ""
        await self._record_approval(
            "end",
            S.REJECTED,
            f"Rejected by {request.decided_by}{said}; nothing was built",
            {"by": request.decided_by, "comment": request.comment},
        )
        return ApprovalDecided(ApprovalState.REJECTED, self._status)

    @reject.validator
    def _validate_rejection(self, request: ApprovalRequest) -> None:
        self._refuse_decision(request)

    def _refuse_decision(self, request: ApprovalRequest) -> None:
        """Only a deployment awaiting approval with its plan made; never by its requester."""
        if self._status != S.AWAITING_APPROVAL:
            msg = (
                f"the deployment is {self._status.value.replace('_', ' ')}: only a deployment "
                "awaiting approval can be approved or rejected"
            )
            raise ApplicationError(msg, type=OPERATION_REFUSED, non_retryable=True)
        if request.decided_by_id == self._request.user_id:
            msg = "the requester cannot approve or reject their own deployment"
            raise ApplicationError(msg, type=APPROVAL_FORBIDDEN, non_retryable=True)
        if not self._plan_ready:
            msg = "its plan is still being made: decide once it is shown"
            raise ApplicationError(msg, type=OPERATION_REFUSED, non_retryable=True)

    @workflow.update
    async def extend_lease(self, request: LeaseRequest) -> LeaseAccepted:
        async with self._lease_lock:
            # Asked again: an expiry or another extension may have come in between.
            lease = self._refuse_extension(request)
            lease.expires_at = new_expiry(lease, request.extend_s, request.expires_at)
            lease.warnings_pending = pending_warnings(
                lease.expires_at, self._lease_warnings(), workflow.now()
            )
            lease.extensions += 1
            await self._record_lease(
                f"lease-extended:{lease.extensions}",
                f"Lease extended to {lease.expires_at.isoformat()} by {request.requested_by}",
                {"by": request.requested_by, "expires_at": lease.expires_at.isoformat()},
            )
            return LeaseAccepted(lease.expires_at)

    @extend_lease.validator
    def _validate_extension(self, request: LeaseRequest) -> None:
        self._refuse_extension(request)

    def _refuse_extension(self, request: LeaseRequest) -> Lease:
        """The lease to extend, or the refusal: the status (409), or the extension itself (422,
        with the field it names)."""
        reason = extension_refusal(self._status)
        if reason is not None:
            raise ApplicationError(reason, type=OPERATION_REFUSED, non_retryable=True)
        if self._lease is None:
            msg = "the deployment has no lease (its template sets no lease_s, or it is starting)"
            raise ApplicationError(msg, type=OPERATION_REFUSED, non_retryable=True)
        if (request.extend_s is None) == (request.expires_at is None):
            msg = "name exactly one of extend_s and expires_at"
            raise ApplicationError(msg, "extend_s", type=LEASE_REFUSED, non_retryable=True)
        error = extension_error(self._lease, workflow.now(), request.extend_s, request.expires_at)
        if error is not None:
            field, msg = error
            raise ApplicationError(msg, field, type=LEASE_REFUSED, non_retryable=True)
        return self._lease

    def _refuse_unless(self, operation: Operation) -> None:
        """Refused by a validator, an operation leaves no trace in the workflow's history; the
        handler asks again, as updates accepted together run after each other's validators."""
        reason = refusal(operation, self._status)
        if reason is not None:
            raise ApplicationError(reason, type=OPERATION_REFUSED, non_retryable=True)

    # --- the callback's signals ---------------------------------------------------------------

    @workflow.signal
    def pipeline_started(self, event: PipelineStarted) -> None:
        self._started.setdefault(event.run, event)

    @workflow.signal
    def pipeline_finished(self, event: PipelineFinished) -> None:
        self._finished.setdefault(event.run, event)

    # --- launch and provisioning --------------------------------------------------------------

    async def _launch(self) -> None:
        request = self._request
        try:
            deployment = await self._validate(request)
            await self._record_deployment(request, deployment)
        except ApplicationError as rejection:
            # The API recorded the deployment: it must end, with the reason, not stay pending.
            await self._reject(request.deployment_id, rejection)
            raise
        self._deployment = deployment
        # Not cancelled meanwhile; one that needs approval asks for it as it starts provisioning.
        if self._status == S.PENDING and not self._needs_approval():
            self._set_status(S.PROVISIONING)
            await self._begin_building()

    async def _begin_building(self) -> None:
        """The disks planned in the database, and the lease from now."""
        await workflow.execute_local_activity_method(
            DeploymentSteps.record_disks_allocated,
            DisksAllocatedInput(self._request.deployment_id, self._validated().disks),
            **DB_STEP,
        )
        if self._lease is None:
            await self._start_lease()

    async def _validate(self, request: DeployRequest) -> ValidatedDeployment:
        """The template may have changed since the API checked: this answer is the authority."""
        try:
            return await workflow.execute_local_activity_method(
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
            await workflow.execute_local_activity_method(
                DeploymentSteps.record_deployment, data, **DB_STEP
            )
        except ActivityError as error:
            raise _rejection(error) from None

    async def _reject(self, deployment_id: int, rejection: ApplicationError) -> None:
        errors = rejection.details[0] if rejection.details else []
        data = RejectDeploymentInput(deployment_id, rejection.message, errors)
        await workflow.execute_local_activity_method(
            DeploymentSteps.reject_deployment, data, **DB_STEP
        )
        self._set_status(S.FAILED)

    async def _provision(self) -> None:
        """One deploy attempt: start its run, wait for its outcome, settle. Returns early when a
        cancel arrives (the cancel stops the run)."""
        if self._needs_approval():
            if not await self._seek_approval():
                return  # rejected, expired, cancelled, or its plan failed
            await self._begin_building()
        deployment = self._validated()
        try:
            run = await self._start_run(RunAction.DEPLOY, S.QUEUED)
        except ActivityError as error:
            reason = f"Deployment failed: {self._run_error(error)}"
            await self._fail(_key("result", self._runs), reason)
            return
        if self._status == S.CANCELLING:
            return
        timeout = timedelta(
            seconds=deployment.callback_timeout_s or self._request.default_callback_timeout_s
        )
        outcome = await self._await_outcome(run, self._runs, timeout, deploying=True)
        if outcome is None:
            return  # cancelled while it ran
        status, message, details = outcome
        key = _key("result", self._runs)
        if status == S.SUCCEEDED:
            await self._succeed(key, message, details)
        else:
            await self._fail(key, message, details, status=status)

    async def _update(self) -> None:
        """A change of a succeeded deployment: the deploy playbook runs again, as a new run on
        the runs' host, with the new sizes and values (it grows the volume or image file, then
        the filesystem, online, and applies the configuration); then `succeeded` with them, or
        `failed` with the reason."""
        await workflow.wait_condition(workflow.all_handlers_finished)  # `updating` recorded
        try:
            run = await self._start_run(RunAction.DEPLOY, S.UPDATING)
        except ActivityError as error:
            reason = f"{self._change} failed: {self._run_error(error)}"
            await self._fail(_key("result", self._runs), reason, retain=False)
            return
        deployment = self._validated()
        timeout = timedelta(
            seconds=deployment.callback_timeout_s or self._request.default_callback_timeout_s
        )
        outcome = await self._await_outcome(run, self._runs, timeout, deploying=False)
        assert outcome is not None  # only a deploy while provisioning is interrupted
        status, message, details = outcome
        key = _key("result", self._runs)
        if status == S.SUCCEEDED:
            await self._succeed(key, f"{self._change} succeeded: {self._change_done}", details)
        else:
            reason = details.get("reason") or message
            # It served until this change: its data stays until someone retries or destroys
            # it, never torn down on its own at the end of a retention period.
            failed = f"{self._change} failed: {reason}"
            await self._fail(key, failed, details, status=status, retain=False)

    async def _succeed(self, key: str, message: str, details: dict[str, Any]) -> None:
        """A deploy run succeeded: its disks allocated, with the sizes and the configuration it
        applied (a launch, a retry, a change)."""
        deployment = self._validated()
        await self._step(
            key,
            S.SUCCEEDED,
            message,
            details,
            DiskState.ALLOCATED,
            disk_sizes=[DiskResize(disk.mount_point, disk.size_gb) for disk in deployment.disks],
            configuration=deployment.configuration,
        )

    # --- approval -----------------------------------------------------------------------------

    def _needs_approval(self) -> bool:
        approval = self._approval
        return self._validated().requires_approval and (
            approval is None or approval.state != ApprovalState.APPROVED
        )

    async def _seek_approval(self) -> bool:
        """Plan (a check-mode run on the hosts), then wait for an admin's decision, at most the
        template's approval_timeout_s (silence rejects). True once approved; False when it was
        rejected, expired, cancelled or its plan failed (failed: a retry plans again)."""
        deployment = self._validated()
        self._approval = Approval(ApprovalState.PENDING)
        self._plan_ready = False
        await self._step(
            _key("approval-requested", self._runs + 1),
            S.AWAITING_APPROVAL,
            "Awaiting approval: planning what it would build",
            {},
        )
        try:
            run = await self._start_run(RunAction.PLAN, S.AWAITING_APPROVAL)
        except ActivityError as error:
            reason = f"Plan failed: {self._run_error(error)}"
            await self._fail(_key("result", self._runs), reason, retain=False)
            return False
        timeout = timedelta(
            seconds=deployment.callback_timeout_s or self._request.default_callback_timeout_s
        )
        outcome = await self._await_outcome(run, self._runs, timeout, deploying=False)
        assert outcome is not None  # only a deploy run is interrupted
        status, message, details = outcome
        if self._status == S.CANCELLING:
            return False  # cancelled while it planned
        if status != S.SUCCEEDED:
            reason = details.get("reason") or message
            failed = f"Plan failed: {reason}; nothing was built"
            await self._fail(
                _key("result", self._runs), failed, details, status=status, retain=False
            )
            return False
        seconds = deployment.approval_timeout_s or DEFAULT_APPROVAL_TIMEOUT_S
        deadline = workflow.now() + timedelta(seconds=seconds)
        plan = make_plan(
            deployment.disks,
            deployment.configuration,
            deployment.secret_keys,
            list((details.get("stats") or {}).keys()),
            {
                "id": deployment.template_id,
                "name": deployment.template_name,
                "version": deployment.template_version,
            },
        )
        self._plan_ready = True
        hosts = ", ".join(plan["hosts"]) or "no host"
        await self._record_approval(
            _key("plan", self._runs),
            S.AWAITING_APPROVAL,
            f"Plan ready ({len(plan['disks'])} disks on {hosts}): awaiting an admin's "
            f"approval until {deadline.isoformat()}",
            {"plan": plan, "decide_by": deadline.isoformat()},
            plan,
        )
        try:
            await workflow.wait_condition(
                lambda: self._status != S.AWAITING_APPROVAL, timeout=timedelta(seconds=seconds)
            )
        except TimeoutError:
            self._approval = Approval(ApprovalState.EXPIRED, None, workflow.now())
            await self._record_approval(
                "end",
                S.REJECTED,
                f"Rejected: nobody approved it within {describe_seconds(seconds)}; nothing "
                "was built",
                {"approval_timeout_s": seconds},
            )
            return False
        await workflow.wait_condition(workflow.all_handlers_finished)  # the decision recorded
        return self._status == S.PROVISIONING

    async def _record_approval(
        self,
        key: str,
        status: S,
        message: str,
        details: dict[str, Any],
        plan: dict[str, Any] | None = None,
    ) -> None:
        """The approval as it now stands (and the plan), with its step, in one transaction;
        tells the webhooks' receivers of a status move."""
        assert self._approval is not None
        before = self._status
        step = self._make_step(key, status, message, details)
        step.notify = WebhookEventType.STATUS_CHANGED if self._status != before else None
        listening = await workflow.execute_local_activity_method(
            DeploymentSteps.record_approval,
            RecordApprovalInput(self._request.deployment_id, self._approval, step, plan),
            **DB_STEP,
        )
        if listening and step.notify is not None:
            await self._notify(step, step.notify, before)

    # --- cancel, destroy, retention -----------------------------------------------------------

    async def _cancel(self) -> None:
        """Stop the run where it runs, wait until it ended, tear down what it built."""
        await workflow.wait_condition(workflow.all_handlers_finished)  # `cancelling` recorded
        if self._run is not None and not await self._stop_run(self._run):
            reason = "Cancel failed: the pipeline run could not be stopped"
            await self._fail(_key("cancel-failed", self._runs), reason)
            return
        if self._built:
            ok, reason = await self._teardown()
            if not ok:
                failed = f"Cancel failed: teardown failed: {reason}"
                await self._fail(_key("cancel-failed", self._runs), failed)
                return
        await self._end(S.CANCELLED, "Deployment cancelled; nothing of it is left")

    async def _destroy(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)  # `destroying` recorded
        ok, reason = await self._teardown()
        if not ok:
            await self._fail(_key("destroy-failed", self._runs), f"Destroy failed: {reason}")
            await self._retry_expired_lease()
            return
        message = f"Deployment destroyed ({self._destroy_reason}); nothing of it is left"
        await self._end(S.DESTROYED, message)

    async def _begin_destroy(
        self, reason: str, by: str, event: WebhookEventType = WebhookEventType.STATUS_CHANGED
    ) -> None:
        self._destroy_reason = reason
        self._retained_until = None
        await self._step(
            _key("destroy-requested", self._runs + 1),
            S.DESTROYING,
            f"Destroy {reason}" if reason.startswith("requested") else f"Destroy: {reason}",
            {"by": by, "reason": reason},
            notify=event,
        )

    async def _settled(self) -> None:
        """Wait for an operation, for the end of a failed deployment's retention, or for the
        next warning or the end of its lease."""
        if self._history_is_long():
            await self._continue_as_new()
        settled = self._status
        expiry = self._expiry()
        due = self._next_due()
        timeout = None if due is None else max(due[0] - workflow.now(), timedelta(0))
        try:
            await workflow.wait_condition(
                lambda: (
                    self._status != settled or self._expiry() != expiry or self._history_is_long()
                ),
                timeout=timeout,
            )
        except TimeoutError:
            await self._handle_due()
        # An operation's handler records its first step before the work starts.
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _next_due(self) -> tuple[datetime, str] | None:
        """The first thing a settled deployment waits for besides an operation: the end of its
        retention, its lease's next warning, or the end of its lease (the end first on a tie)."""
        times: list[tuple[datetime, int, str]] = []
        if self._lease is not None:
            times.append((self._lease.expires_at, 0, LEASE_ENDS))
            if self._lease.warnings_pending:
                before = timedelta(seconds=self._lease.warnings_pending[0])
                times.append((self._lease.expires_at - before, 2, LEASE_WARNING))
        if self._retained_until is not None:
            times.append((self._retained_until, 1, RETENTION_ENDS))
        if not times:
            return None
        when, _, what = min(times)
        return when, what

    async def _handle_due(self) -> None:
        """What the timer woke for, asked again: an extension may have moved the lease."""
        due = self._next_due()
        if due is None or due[0] > workflow.now() or not self._status.is_settled:
            return
        what = due[1]
        if what == RETENTION_ENDS:
            await self._begin_destroy("its failure retention ended", "provisio")
        elif what == LEASE_ENDS:
            await self._begin_destroy(
                "its lease expired", "provisio", WebhookEventType.LEASE_EXPIRED
            )
        else:
            await self._warn_of_lease_end()

    async def _warn_of_lease_end(self) -> None:
        lease = self._lease
        assert lease is not None
        now = workflow.now()
        # Warnings that came due together (the worker was away) say only the nearest of them.
        due = [w for w in lease.warnings_pending if lease.expires_at - timedelta(seconds=w) <= now]
        lease.warnings_pending = [w for w in lease.warnings_pending if w not in due]
        if not due or lease.expires_at <= now:
            return
        before = due[-1]
        when = lease.expires_at.isoformat()
        await self._step(
            f"lease-warning:{int(lease.expires_at.timestamp())}:{before}",
            self._status,
            f"Lease ends in {describe_seconds(before)} (at {when}); the deployment is then"
            " destroyed unless its lease is extended",
            {"expires_at": when, "before_s": before},
            notify=WebhookEventType.LEASE_WARNING,
        )

    # --- the lease ----------------------------------------------------------------------------

    def _expiry(self) -> datetime | None:
        return None if self._lease is None else self._lease.expires_at

    def _lease_warnings(self) -> list[int]:
        warnings = self._validated().lease_warnings_s
        return list(DEFAULT_LEASE_WARNINGS_S) if warnings is None else warnings

    async def _start_lease(self) -> None:
        """A new deployment's lease, from the template's `lease_s` (none without it)."""
        deployment = self._validated()
        if deployment.lease_s is None:
            return
        now = workflow.now()
        expires_at = now + timedelta(seconds=deployment.lease_s)
        self._lease = Lease(
            expires_at=expires_at,
            max_s=deployment.max_lease_s or deployment.lease_s,
            warnings_pending=pending_warnings(expires_at, self._lease_warnings(), now),
        )
        await self._record_lease(
            "lease",
            f"Lease of {describe_seconds(deployment.lease_s)}: expires at {expires_at.isoformat()}",
            {"expires_at": expires_at.isoformat(), "lease_s": deployment.lease_s},
        )

    async def _retry_expired_lease(self) -> None:
        """A destroy that failed after the lease ended is never dropped: it is tried again
        later, and the deployment shows when."""
        lease = self._lease
        if lease is None or lease.expires_at > workflow.now():
            return
        lease.expires_at = workflow.now() + timedelta(seconds=self._request.lease_destroy_retry_s)
        lease.warnings_pending = []
        await self._record_lease(
            _key("lease-retry", self._runs),
            f"The lease has ended: its destroy is tried again at {lease.expires_at.isoformat()}",
            {"expires_at": lease.expires_at.isoformat()},
        )

    async def _record_lease(self, key: str, message: str, details: dict[str, Any]) -> None:
        """The lease's expiry as it now stands, with its history row (the status unchanged)."""
        step = self._make_step(key, self._status, message, details)
        await workflow.execute_local_activity_method(
            DeploymentSteps.record_lease,
            RecordLeaseInput(self._request.deployment_id, self._expiry(), step),
            **DB_STEP,
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._request.max_history_events
        )

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = DeploymentState(
            deployment=self._validated(),
            status=self._status,
            attempt=self._attempt,
            runs=self._runs,
            retained_until=self._retained_until,
            host=self._host,
            lease=self._lease,
            approval=self._approval,
            built=self._built,
        )
        workflow.continue_as_new(dataclasses.replace(self._request, resume=state))

    async def _teardown(self) -> tuple[bool, str]:
        """Run the teardown playbook (destroy.yml) to its end: (ok, reason if not)."""
        try:
            run = await self._start_run(RunAction.DESTROY, self._status)
        except ActivityError as error:
            return False, f"could not start the teardown: {self._run_error(error)}"
        # Not the template's callback timeout: a template may bound its deploy tightly (a
        # quick smoke run) while a teardown cut short leaves half its disks behind.
        timeout = timedelta(seconds=self._request.default_callback_timeout_s)
        outcome = await self._await_outcome(run, self._runs, timeout, deploying=False)
        assert outcome is not None  # only a deploy run is interrupted
        status, message, details = outcome
        return status == S.SUCCEEDED, str(details.get("reason") or message)

    async def _stop_run(self, run: RunRef) -> bool:
        """Stop a run and wait until the runner reports it ended. False if it never does."""
        try:
            await workflow.execute_activity_method(
                PipelineSteps.cancel_pipeline, run, **await self._on_host(STOP_RUN)
            )
        except ActivityError as error:
            workflow.logger.warning("could not stop pipeline run %s", run.job_id)
            self._run_error(error)
        deadline = workflow.now() + STOP_CONFIRM_TIMEOUT
        while workflow.now() < deadline and not self._host_silent:
            status = await self._check_run(run)
            if status is not None and (status.state.is_final or status.state == RunState.UNKNOWN):
                return True
            await workflow.sleep(timedelta(seconds=2))
        return False

    # --- runs ---------------------------------------------------------------------------------

    async def _start_run(self, action: RunAction, status: S) -> RunRef:
        """Start the deployment's next run and record it (`triggered`, moving to `status`)."""
        self._runs += 1
        run_number = self._runs
        start = StartPipelineInput(
            self._request.deployment_id,
            workflow.info().workflow_id,
            self._request.deployment_name,
            self._validated(),
            action=action,
            run=run_number,
        )
        run = await workflow.execute_activity_method(
            PipelineSteps.start_pipeline, start, **await self._on_host(TRIGGER)
        )
        self._run = run
        self._host_silent = False
        self._built = self._built or action == RunAction.DEPLOY
        what = "Pipeline" if action == RunAction.DEPLOY else "Teardown"
        before = self._status
        step = self._make_step(
            _key("triggered", run_number),
            status,
            f"{what} triggered ({run.job_id})",
            {"job_id": run.job_id, "url": run.url, "action": action.value, "run": run_number},
        )
        step.notify = WebhookEventType.STATUS_CHANGED if self._status != before else None
        listening = await workflow.execute_local_activity_method(
            DeploymentSteps.record_pipeline_triggered,
            RecordRunInput(self._request.deployment_id, run, step),
            **DB_STEP,
        )
        if listening and step.notify is not None:
            await self._notify(step, step.notify, before)
        return run

    async def _await_outcome(
        self, run: RunRef, run_number: int, timeout: timedelta, *, deploying: bool
    ) -> Outcome | None:
        """Wait for the run's final callback, watching the runner; bounded by `timeout`.
        None when a cancel arrives while a deploy run waits."""
        deadline = workflow.now() + timeout
        poll = max(timedelta(seconds=self._request.poll_interval_s), timeout / MAX_STATUS_CHECKS)
        runner_ended_at = None
        running_recorded = False
        self._check_timer = None
        while True:
            if deploying and self._status == S.CANCELLING:
                return None
            started = self._started.get(run_number)
            if deploying and started is not None and not running_recorded:
                running_recorded = True
                await self._step(
                    _key("running", run_number), S.RUNNING, "Playbook started", started.details
                )
                continue
            finished = self._finished.get(run_number)
            if finished is not None:
                return _outcome_of(finished)
            if self._host_silent:
                reason = self._host_silent_reason()
                return (
                    S.FAILED,
                    f"Pipeline run lost: {reason}",
                    {"job_id": run.job_id, "reason": reason},
                )
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                await self._stop_run(run)
                return S.TIMED_OUT, f"No result within {int(timeout.total_seconds())}s", {}

            def woken(recorded: bool = running_recorded) -> bool:
                return (
                    run_number in self._finished
                    or (deploying and self._status == S.CANCELLING)
                    or (deploying and not recorded and run_number in self._started)
                )

            if not await self._wait_or_check(min(poll, remaining), woken):
                continue
            status = await self._check_run(run)
            if status is None:
                continue  # the runner did not answer: keep waiting (its host may be gone)
            if status.ref is not None:
                run = status.ref
                self._run = run
                await workflow.execute_local_activity_method(
                    DeploymentSteps.record_pipeline_run,
                    RecordRunInput(self._request.deployment_id, run),
                    **DB_STEP,
                )
            if not status.state.is_final:
                continue
            # The run is over but its final callback has not come: give it a moment, then
            # take the runner's word for the result.
            runner_ended_at = runner_ended_at or workflow.now()
            if workflow.now() - runner_ended_at < min(CALLBACK_GRACE, 2 * poll):
                continue
            if status.state == RunState.SUCCEEDED:
                return _outcome_of(PipelineFinished(True, status.stats or {}, run=run_number))
            reason = status.reason or f"pipeline run {status.state}"
            message = f"Pipeline {status.state} before reporting: {reason}"
            return S.FAILED, message, {"job_id": run.job_id, "reason": reason}

    async def _wait_or_check(self, delay: timedelta, woken: Any) -> bool:
        """Wait for something to handle or for the next status check; True when the check is
        due. One timer serves each check across signals, so signals add no timers to history."""
        if self._check_timer is None:
            self._check_timer = asyncio.ensure_future(workflow.sleep(delay))
        timer = self._check_timer
        await workflow.wait_condition(lambda: woken() or timer.done())
        if not timer.done():
            return False
        self._check_timer = None
        return True

    async def _check_run(self, run: RunRef) -> RunStatus | None:
        try:
            return await workflow.execute_activity_method(
                PipelineSteps.pipeline_status, run, **await self._on_host(STATUS_CHECK)
            )
        except ActivityError as error:
            self._run_error(error)
            return None  # the runner is unreachable: keep waiting; the timeout still holds

    # --- the runs' host -----------------------------------------------------------------------

    async def _on_host(self, options: dict[str, Any]) -> dict[str, Any]:
        """`options` for a call that must reach the runs' host: its own task queue, and a bound
        on how long the call may wait there untaken."""
        if self._host is None:
            # The worker that runs this workflow task answers (a local activity): its host
            # holds the runs. Every worker polls its host's queue, so that host can take them.
            self._host = await workflow.execute_local_activity_method(
                PipelineSteps.run_host, self._request.deployment_id, **DB_STEP
            )
        if self._host.task_queue is None:
            return options
        silence = timedelta(seconds=self._request.host_answer_timeout_s)
        return {
            **options,
            "task_queue": self._host.task_queue,
            "schedule_to_start_timeout": silence,
        }

    def _run_error(self, error: ActivityError) -> str:
        """What went wrong with a call to the runner; notes a host that stopped answering."""
        cause = error.cause
        if isinstance(cause, CallTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
            self._host_silent = True
            return self._host_silent_reason()
        return str(cause or error)

    def _host_silent_reason(self) -> str:
        queue = self._host.task_queue if self._host else None
        return (
            f"its host stopped answering: no worker took a call from {queue} within "
            f"{self._request.host_answer_timeout_s}s"
        )

    # --- steps --------------------------------------------------------------------------------

    async def _fail(
        self,
        key: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        status: S = S.FAILED,
        retain: bool = True,
    ) -> None:
        """Settle as failed (or timed out), keeping what was built for the retention period;
        without `retain`, kept until someone retries or destroys it."""
        if not retain:
            self._retained_until = None
            await self._step(key, status, message, details or {})
            return
        template_retention = self._validated().failure_retention_s
        seconds = (
            self._request.default_failure_retention_s
            if template_retention is None
            else template_retention
        )
        self._retained_until = workflow.now() + timedelta(seconds=seconds)
        details = {**(details or {}), "retained_until": self._retained_until.isoformat()}
        await self._step(key, status, message, details)

    async def _end(self, status: S, message: str) -> None:
        """Cancelled or destroyed: nothing is left, every disk released, no lease."""
        self._retained_until = None
        await self._step("end", status, message, {}, DiskState.RELEASED)
        if self._lease is not None:
            self._lease = None
            await workflow.execute_local_activity_method(
                DeploymentSteps.record_lease,
                RecordLeaseInput(self._request.deployment_id, None),
                **DB_STEP,
            )

    def _make_step(
        self,
        key: str,
        status: S,
        message: str,
        details: dict[str, Any],
        disk_state: DiskState | None = None,
        disk_sizes: list[DiskResize] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> RecordStepInput:
        """Move to `status` in memory (if that move is allowed) and describe the step."""
        if self._status in ENTERED_FROM[status]:
            self._set_status(status)
        return RecordStepInput(
            self._request.deployment_id,
            key,
            status,
            message,
            details,
            attempt=self._attempt,
            retained_until=self._retained_until,
            disk_state=disk_state,
            disk_sizes=disk_sizes,
            configuration=configuration,
        )

    async def _step(
        self,
        key: str,
        status: S,
        message: str,
        details: dict[str, Any],
        disk_state: DiskState | None = None,
        *,
        disk_sizes: list[DiskResize] | None = None,
        configuration: dict[str, Any] | None = None,
        notify: WebhookEventType | None = None,
    ) -> None:
        """Record a step; tell the webhooks' receivers of a status move (or of `notify`)."""
        before = self._status
        step = self._make_step(key, status, message, details, disk_state, disk_sizes, configuration)
        if notify is None and self._status != before:
            notify = WebhookEventType.STATUS_CHANGED
        step.notify = notify
        listening = await workflow.execute_local_activity_method(
            DeploymentSteps.record_step, step, **DB_STEP
        )
        if listening and notify is not None:
            await self._notify(step, notify, before)

    async def _notify(self, step: RecordStepInput, kind: WebhookEventType, before: S) -> None:
        """Hand the event to its own delivery workflow, abandoned on close: the deployment
        waits only for its start, never for a receiver (which may take a day)."""
        event_id = webhook_event_id(self._request.deployment_id, step.event_key)
        event = WebhookEvent(
            event_id=event_id,
            event_type=kind,
            deployment_id=self._request.deployment_id,
            occurred_at=workflow.now(),
            data={
                "deployment": {
                    "id": self._request.deployment_id,
                    "name": self._request.deployment_name,
                    "status": self._status.value,
                    "previous_status": before.value,
                    "attempt": self._attempt,
                    "expires_at": None
                    if self._lease is None
                    else self._lease.expires_at.isoformat(),
                },
                "message": step.message,
                "details": step.details,
            },
        )
        try:
            await workflow.start_child_workflow(
                WebhookDeliveryWorkflow.run,
                event,
                id=webhook_workflow_id(event_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            pass  # this event's delivery is on its way already

    def _set_status(self, status: S) -> None:
        self._status = status
        workflow.upsert_search_attributes([sa.DEPLOYMENT_STATUS.value_set(status.value)])

    def _validated(self) -> ValidatedDeployment:
        assert self._deployment is not None, "validated before anything runs"
        return self._deployment


def _change_name(resize: bool, reconfigure: bool) -> str:
    if resize and reconfigure:
        return "Resize and configuration change"
    return "Resize" if resize else "Configuration change"


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
