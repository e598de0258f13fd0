"""A pipeline run as every layer names it: its reference, its state and its status.

The runners report these, the activities return them to the workflow unchanged, and
`deployments.jenkins_job_id` stores the latest run's `job_id` (`local-<id>-<run>` for the local
runner, a Jenkins queue item `queue:<n>` or build `build:<n>`).
"""

# No `from __future__ import annotations`: the data converter resolves these dataclasses' hints
# inside the workflow sandbox, whose sys.modules may lack this module; real annotations need no
# lookup there.

import enum
from dataclasses import dataclass, field
from typing import Any


class RunAction(enum.StrEnum):
    """What a run does: the playbook it runs (`playbooks/<action>.yml`; a plan runs deploy.yml
    in check mode)."""

    DEPLOY = "deploy"
    DESTROY = "destroy"
    # The deploy playbook in check mode with diff: what a deploy would do, changing nothing.
    PLAN = "plan"


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
        return self in FINAL_RUN_STATES


FINAL_RUN_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.ABORTED, RunState.MISSING}
)


@dataclass(frozen=True)
class RunRef:
    """Identifies one run."""

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


@dataclass(frozen=True)
class RunHost:
    """Where a deployment's runs are started, watched and stopped: the task queue of the one
    worker host that holds them (the local runner's processes and files live there), or None
    when any worker reaches the runner (Jenkins, manual). Chosen once, at the first run."""

    task_queue: str | None = None
