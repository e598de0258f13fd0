"""The signatures of the workflows' activities (DeployWorkflow's, WebhookDeliveryWorkflow's):
what the workflows call and `activities/` implements.

The workflow calls them by reference (`workflow.execute_activity_method(DeploymentSteps.x, …)`),
so mypy checks each argument and result and a rename cannot break a call silently, while neither
SQLAlchemy nor a runner library reaches the workflow sandbox. The implementations subclass these
classes and repeat `@activity.defn`; the worker registers whatever `activity_methods` finds, so
the list of activities is written nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from vocabulary.contracts import (
    DeployRequest,
    DisksAllocatedInput,
    RecordApprovalInput,
    RecordDeploymentInput,
    RecordLeaseInput,
    RecordRunInput,
    RecordStepInput,
    RejectDeploymentInput,
    StartPipelineInput,
    ValidatedDeployment,
)
from vocabulary.runs import RunHost, RunRef, RunStatus
from vocabulary.webhook_deliveries import WebhookDelivery, WebhookReceiver


class DeploymentSteps:
    """Database steps: one transaction each, safe to run twice."""

    @activity.defn
    async def validate_deployment(self, request: DeployRequest) -> ValidatedDeployment:
        raise NotImplementedError

    @activity.defn
    async def record_deployment(self, data: RecordDeploymentInput) -> None:
        raise NotImplementedError

    @activity.defn
    async def reject_deployment(self, data: RejectDeploymentInput) -> None:
        raise NotImplementedError

    @activity.defn
    async def record_disks_allocated(self, data: DisksAllocatedInput) -> None:
        raise NotImplementedError

    @activity.defn
    async def record_pipeline_triggered(self, data: RecordRunInput) -> bool:
        """True when its step is an event someone listens to, as for `record_step`."""
        raise NotImplementedError

    @activity.defn
    async def record_pipeline_run(self, data: RecordRunInput) -> None:
        raise NotImplementedError

    @activity.defn
    async def record_step(self, data: RecordStepInput) -> bool:
        """True when the step is an event (`notify`) that someone listens to: the owner has a
        webhook URL, or the service a global one."""
        raise NotImplementedError

    @activity.defn
    async def record_lease(self, data: RecordLeaseInput) -> None:
        raise NotImplementedError

    @activity.defn
    async def record_approval(self, data: RecordApprovalInput) -> bool:
        """True when its step is an event someone listens to, as for `record_step`."""
        raise NotImplementedError


class PipelineSteps:
    """Calls to the pipeline runner. Blocking libraries: sync, run on the worker's thread pool."""

    @activity.defn
    def run_host(self, deployment_id: int) -> RunHost:
        """Where this worker's runs live: the worker that takes this holds the deployment's."""
        raise NotImplementedError

    @activity.defn
    def start_pipeline(self, data: StartPipelineInput) -> RunRef:
        raise NotImplementedError

    @activity.defn
    def pipeline_status(self, run: RunRef) -> RunStatus:
        raise NotImplementedError

    @activity.defn
    def cancel_pipeline(self, run: RunRef) -> None:
        raise NotImplementedError


class WebhookSteps:
    """WebhookDeliveryWorkflow's steps: who receives an event, and one receiver's delivery."""

    @activity.defn
    async def webhook_receivers(self, deployment_id: int) -> list[WebhookReceiver]:
        """The receivers configured now: the owner's URL, the global one."""
        raise NotImplementedError

    @activity.defn
    async def deliver_webhook(self, delivery: WebhookDelivery) -> int:
        """One signed POST to the receiver; its 2xx status, else an ApplicationError
        (`WEBHOOK_UNDELIVERED` to try again, non-retryable `WEBHOOK_REFUSED` to give up)."""
        raise NotImplementedError


INTERFACES: tuple[type, ...] = (DeploymentSteps, PipelineSteps, WebhookSteps)


def declared_activities(interface: type) -> list[str]:
    """The names of the activities an interface declares, in declaration order."""
    return [
        name
        for name, member in vars(interface).items()
        if activity._Definition.from_callable(member) is not None
    ]


def activity_methods(*implementations: object) -> list[Callable[..., Any]]:
    """Every declared activity, bound to the implementation that provides it.

    Each implementation must subclass an interface and define every activity it declares."""
    methods: list[Callable[..., Any]] = []
    for implementation in implementations:
        interfaces = [i for i in INTERFACES if isinstance(implementation, i)]
        if not interfaces:
            raise TypeError(f"{type(implementation).__name__} implements no activity interface")
        for interface in interfaces:
            for name in declared_activities(interface):
                method = getattr(implementation, name)
                if getattr(type(implementation), name) is getattr(interface, name):
                    raise TypeError(f"{type(implementation).__name__} does not implement {name}")
                methods.append(method)
    return methods
