"""Typed inputs and results of DeployWorkflow, its signals and its activities.

Plain dataclasses with defaults on every added field, so a field can be added without breaking
running workflows.
"""

# No `from __future__ import annotations`: the data converter resolves these dataclasses' hints
# inside the workflow sandbox, whose sys.modules may lack this module; real annotations need no
# lookup there.

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vocabulary.approvals import Approval
from vocabulary.disks import DiskOverride, DiskResize, DiskSpec, DiskState
from vocabulary.leases import Lease
from vocabulary.notifications import WebhookEventType
from vocabulary.operations import Operation
from vocabulary.runs import RunAction, RunHost, RunRef
from vocabulary.statuses import DeploymentStatus

JSON = dict[str, Any]


@dataclass
class ValidatedDeployment:
    template_id: int
    template_name: str
    template_version: int
    service_type: str
    configuration: JSON
    disks: list[DiskSpec]
    callback_timeout_s: int | None = None
    failure_retention_s: int | None = None
    # The template's lease settings (`provisio.lease_s`, `max_lease_s`, `lease_warnings_s`).
    lease_s: int | None = None
    max_lease_s: int | None = None
    lease_warnings_s: list[int] | None = None
    # Configuration keys the template's overrides schema marks secret (masked in history).
    secret_keys: list[str] = field(default_factory=list)
    # The template's `provisio.requires_approval` and `approval_timeout_s`.
    requires_approval: bool = False
    approval_timeout_s: int | None = None


@dataclass
class DeploymentState:
    """What the deployment's workflow carries into its next run when it continues as new."""

    deployment: ValidatedDeployment
    status: DeploymentStatus
    attempt: int
    runs: int
    retained_until: datetime | None = None
    host: RunHost | None = None  # None until the first run chose it
    lease: Lease | None = None  # None when the deployment has no lease
    approval: Approval | None = None  # None unless its template requires one
    built: bool = True  # a deploy run started (a deployment only planned has nothing to tear down)


@dataclass
class DeployRequest:
    """What the API starts a DeployWorkflow with, once it has recorded the deployment."""

    deployment_id: int
    user_id: int
    username: str
    template_id: int
    deployment_name: str
    configuration: JSON = field(default_factory=dict)
    disk_overrides: list[DiskOverride] = field(default_factory=list)
    default_callback_timeout_s: int = 3600
    poll_interval_s: int = 30
    default_failure_retention_s: int = 86400
    # Continue as new past this many history events (or when Temporal suggests it).
    max_history_events: int = 2000
    # How long a run's host may leave a call to it untaken before the run counts as lost.
    host_answer_timeout_s: int = 300
    # A destroy at the end of a lease that fails is tried again this long after.
    lease_destroy_retry_s: int = 3600
    # Set when the workflow continues as new: where the deployment stands.
    resume: DeploymentState | None = None


@dataclass
class OperationRequest:
    """An Update's input: who asks, and why (shown in history)."""

    requested_by: str
    reason: str | None = None


@dataclass
class OperationAccepted:
    """An Update's answer: the operation and the status the deployment now has."""

    operation: Operation
    status: DeploymentStatus


@dataclass
class ChangeRequest:
    """The change Update's input: who asks, the disks' new sizes (grow only) and the
    configuration values to set (within the template's overrides); one or both."""

    requested_by: str
    disks: list[DiskResize] = field(default_factory=list)
    configuration: JSON = field(default_factory=dict)


@dataclass
class ChangeAccepted:
    """The change Update's answer: the status the deployment now has (updating)."""

    status: DeploymentStatus


@dataclass
class LeaseRequest:
    """The lease extension Update's input: `extend_s` after the current expiry, or a new
    `expires_at`; exactly one of them."""

    requested_by: str
    extend_s: int | None = None
    expires_at: datetime | None = None


@dataclass
class LeaseAccepted:
    expires_at: datetime


@dataclass
class RecordDeploymentInput:
    """The deployment the API recorded, written again (same id) should its commit be lost."""

    deployment_id: int
    workflow_id: str
    user_id: int
    deployment_name: str
    deployment: ValidatedDeployment


@dataclass
class RejectDeploymentInput:
    """The workflow's own validation refused a deployment the API had already recorded."""

    deployment_id: int
    message: str
    errors: list[JSON] = field(default_factory=list)


@dataclass
class DisksAllocatedInput:
    deployment_id: int
    disks: list[DiskSpec]


@dataclass
class StartPipelineInput:
    deployment_id: int
    workflow_id: str
    deployment_name: str
    deployment: ValidatedDeployment
    action: RunAction = RunAction.DEPLOY
    run: int = 1


@dataclass
class RecordStepInput:
    """One status change and its history row, written in one transaction, once per event_key.

    The deployment's attempt and retention are written with every status it moves to; a disk
    state, when given, moves every disk of the deployment with it, and disk sizes, when given,
    become the disks' sizes."""

    deployment_id: int
    event_key: str
    status: DeploymentStatus
    message: str
    details: JSON = field(default_factory=dict)
    attempt: int = 1
    retained_until: datetime | None = None
    disk_state: DiskState | None = None
    # Every disk's size as the run that succeeded made it, written with the status move.
    disk_sizes: list[DiskResize] | None = None
    # The configuration as the run that succeeded applied it, written with the status move.
    configuration: JSON | None = None
    # The step is an event for the webhooks' receivers (`record_step` says whether any listen).
    notify: WebhookEventType | None = None


@dataclass
class RecordApprovalInput:
    """The deployment's approval as it now stands (and its plan, once made), with the step it
    makes, in one transaction."""

    deployment_id: int
    approval: Approval
    step: RecordStepInput
    plan: JSON | None = None


@dataclass
class RecordRunInput:
    """A run's reference, recorded as the deployment's job id, with the step it makes."""

    deployment_id: int
    run: RunRef
    step: RecordStepInput | None = None


@dataclass
class RecordLeaseInput:
    """The deployment's expiry (None: no lease any more) with the history row that says why."""

    deployment_id: int
    expires_at: datetime | None
    step: RecordStepInput | None = None


@dataclass
class PipelineStarted:
    """Signal: the playbook of run `run` has started."""

    details: JSON = field(default_factory=dict)
    run: int = 1


@dataclass
class PipelineFinished:
    """Signal: the final result of run `run`'s playbook, with per-host stats."""

    ok: bool
    stats: JSON = field(default_factory=dict)
    reason: str | None = None
    run: int = 1


@dataclass
class DeployResult:
    deployment_id: int
    status: DeploymentStatus
    reason: str | None = None
