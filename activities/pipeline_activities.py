"""Calls to the pipeline runner. Blocking (python-jenkins, ansible-runner): sync activities that
the worker runs on a thread pool."""

from __future__ import annotations

import dataclasses

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.callback_tokens import callback_token, callback_url
from pipeline.ansible_vars import UnsafeVariablesError, check_variables
from pipeline.runner import PipelineRequest, PipelineRunner
from settings import Settings
from telemetry.tracing import with_trace_context
from vocabulary.activities import PipelineSteps
from vocabulary.contracts import StartPipelineInput
from vocabulary.errors import UNSAFE_VARIABLES
from vocabulary.runs import RunHost, RunRef, RunStatus


class PipelineActivities(PipelineSteps):
    def __init__(self, runner: PipelineRunner, settings: Settings) -> None:
        self._runner = runner
        self._settings = settings
        self._host = RunHost(settings.host_task_queue() if runner.host_bound else None)

    @activity.defn
    def run_host(self, deployment_id: int) -> RunHost:
        """This worker's host, for the deployment's runs (the id is for the activity's log)."""
        return self._host

    @activity.defn
    def start_pipeline(self, data: StartPipelineInput) -> RunRef:
        """Start the run for a deployment, or return the one an earlier attempt started."""
        ref = self._runner.find_run(data.deployment_id, data.run)
        if ref is None:
            request = self._request(data)
            try:
                check_variables(request.variables)
            except UnsafeVariablesError as exc:
                # No retry can make these variables safe: fail the deployment with the reason.
                raise ApplicationError(
                    f"refused before running: {exc}", type=UNSAFE_VARIABLES, non_retryable=True
                ) from None
            ref = self._runner.trigger(request)
            activity.logger.info(
                "pipeline triggered",
                extra={
                    "deployment_id": data.deployment_id,
                    "job_id": ref.job_id,
                    "action": data.action.value,
                    "run": data.run,
                },
            )
        return ref

    @activity.defn
    def pipeline_status(self, run: RunRef) -> RunStatus:
        status = self._runner.status(run)
        # Only a changed reference travels back: the workflow records it.
        changed = status.ref if status.ref and status.ref.job_id != run.job_id else None
        return dataclasses.replace(status, ref=changed)

    @activity.defn
    def cancel_pipeline(self, run: RunRef) -> None:
        self._runner.cancel(run)

    def _request(self, data: StartPipelineInput) -> PipelineRequest:
        deployment = data.deployment
        base = self._settings.public_url.rstrip("/")
        return PipelineRequest(
            deployment_id=data.deployment_id,
            workflow_id=data.workflow_id,
            action=data.action,
            run=data.run,
            # With this activity's trace context, which the callback endpoint continues.
            callback_url=with_trace_context(callback_url(base, data.deployment_id, data.run)),
            callback_token=callback_token(
                self._settings.callback_secret, data.deployment_id, data.workflow_id, data.run
            ),
            variables={
                "provisio_deployment": {
                    "id": data.deployment_id,
                    "name": data.deployment_name,
                    "template": deployment.template_name,
                    "service_type": deployment.service_type,
                    "configuration": deployment.configuration,
                },
                "provisio_disks": [dataclasses.asdict(disk) for disk in deployment.disks],
            },
        )
