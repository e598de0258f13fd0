"""Typed inputs and results of DeployWorkflow, its signals and its activities.

Plain dataclasses with defaults on every added field, so a field can be added without breaking
running workflows.
"""

# No `from __future__ import annotations`: the data converter resolves these dataclasses' hints
# inside the workflow sandbox, whose sys.modules may lack this module; real annotations need no
# lookup there.

from dataclasses import dataclass, field
from typing import Any

from vocabulary.disks import DiskOverride, DiskSpec
from vocabulary.runs import RunRef
from vocabulary.statuses import DeploymentStatus

JSON = dict[str, Any]


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


@dataclass
class ValidatedDeployment:
    template_id: int
    template_name: str
    template_version: int
    service_type: str
    configuration: JSON
    disks: list[DiskSpec]
    callback_timeout_s: int | None = None


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


@dataclass
class RecordRunInput:
    """A run's reference, recorded as the deployment's job id."""

    deployment_id: int
    run: RunRef


@dataclass
class RecordStepInput:
    """One status change and its history row, written in one transaction, once per event_key."""

    deployment_id: int
    event_key: str
    status: DeploymentStatus
    message: str
    details: JSON = field(default_factory=dict)


@dataclass
class PipelineStarted:
    """Signal: the playbook has started."""

    details: JSON = field(default_factory=dict)


@dataclass
class PipelineFinished:
    """Signal: the playbook's final result, with per-host stats."""

    ok: bool
    stats: JSON = field(default_factory=dict)
    reason: str | None = None


@dataclass
class DeployResult:
    deployment_id: int
    status: DeploymentStatus
    reason: str | None = None
