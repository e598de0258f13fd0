"""The interface every pipeline runner implements (manual, local, jenkins).

Runners are called from activities only, never from workflow code. Each call is one external
action, and `trigger` must be safe to repeat: the trigger activity first asks `find_run`, so a
retried activity never starts a second run for the same deployment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class RunState(enum.StrEnum):
    QUEUED = "queued"  # accepted, not started (a Jenkins queue item)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    MISSING = "missing"  # the runner no longer knows the run
    UNKNOWN = "unknown"  # the runner cannot tell (manual runner): keep waiting for callbacks

    @property
    def is_final(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.ABORTED, RunState.MISSING)


@dataclass(frozen=True)
class PipelineRequest:
    """Everything a run needs. `variables` is user data: it reaches Ansible only as !unsafe vars."""

    deployment_id: int
    workflow_id: str
    callback_url: str
    callback_token: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRef:
    """Identifies one run. `job_id` is what `deployments.jenkins_job_id` stores."""

    job_id: str
    url: str | None = None


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    reason: str | None = None
    # Per-host stats when the runner knows the playbook's result (reconciles a lost callback).
    stats: dict[str, Any] | None = None
    # The run's current reference when it changed (a Jenkins queue item became a build).
    ref: RunRef | None = field(default=None, compare=False)


class PipelineRunner(Protocol):
    def find_run(self, deployment_id: int) -> RunRef | None:
        """The run already started for this deployment, if any."""

    def trigger(self, request: PipelineRequest) -> RunRef:
        """Start a run. Called only when `find_run` found none."""

    def status(self, ref: RunRef) -> RunStatus: ...

    def cancel(self, ref: RunRef) -> None: ...
