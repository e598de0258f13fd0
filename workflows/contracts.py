"""Typed inputs and results of DeployWorkflow and its activities.

Plain dataclasses with defaults on every added field, so a field can be added without breaking
running workflows. No I/O here: the workflow sandbox imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class DiskOverride:
    mount_point: str
    size_gb: int | None = None
    filesystem_type: str | None = None


@dataclass
class DeployRequest:
    """What the API starts a DeployWorkflow with."""

    user_id: int
    username: str
    template_id: int
    deployment_name: str
    configuration: JSON = field(default_factory=dict)
    disk_overrides: list[DiskOverride] = field(default_factory=list)
    default_callback_timeout_s: int = 3600
    poll_interval_s: int = 30
    # Set when the API has already written the row (and the template search attributes at
    # start); runs started before that field existed leave it None and behave as they did.
    deployment_id: int | None = None
    # The workflow code branches on this instead of patch markers, which cost every run an
    # event and a search-attribute update. The API starts runs at CURRENT_FLOW_VERSION; a run
    # keeps the version it started with, so replaying it takes the same branches.
    flow_version: int = 1


# 2: one timer per status check, kept across signals.
CURRENT_FLOW_VERSION = 2


@dataclass
class DiskSpec:
    disk_type: str
    size_gb: int
    mount_point: str
    volume_group: str
    logical_volume: str
    filesystem_type: str
    allocation_params: JSON = field(default_factory=dict)


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
class CreateDeploymentInput:
    workflow_id: str
    user_id: int
    deployment_name: str
    deployment: ValidatedDeployment


@dataclass
class RejectDeploymentInput:
    """The workflow's own validation refused a deployment the API had already recorded."""

    workflow_id: str
    message: str
    errors: list[JSON] = field(default_factory=list)


@dataclass
class CloneDisksInput:
    deployment_id: int
    disks: list[DiskSpec]


@dataclass
class StartPipelineInput:
    deployment_id: int
    workflow_id: str
    deployment_name: str
    deployment: ValidatedDeployment


@dataclass
class PipelineRun:
    job_id: str
    url: str | None = None


@dataclass
class PipelineRunStatus:
    state: str
    reason: str | None = None
    stats: JSON | None = None
    # Set when the run's reference changed (a Jenkins queue item became a build).
    run: PipelineRun | None = None


@dataclass
class RecordTriggeredInput:
    deployment_id: int
    run: PipelineRun


@dataclass
class RecordStepInput:
    """One status change and its history row, written in one transaction, once per event_key."""

    deployment_id: int
    event_key: str
    status: str
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
class DeploymentCreated:
    """Result of the `deployment_created` update: the API's answer to a POST."""

    deployment_id: int
    workflow_id: str


@dataclass
class DeployResult:
    deployment_id: int | None
    status: str
    reason: str | None = None
