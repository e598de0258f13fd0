"""The interface every pipeline runner implements (manual, local, jenkins).

Runners are called from activities only, never from workflow code. Each call is one external
action, and `trigger` must be safe to repeat: the trigger activity first asks `find_run`, so a
retried activity never starts a second run for the same deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from vocabulary.runs import RunAction, RunRef, RunStatus


@dataclass(frozen=True)
class PipelineRequest:
    """Everything a run needs. `variables` is user data: it reaches Ansible only as !unsafe vars."""

    deployment_id: int
    workflow_id: str
    callback_url: str
    callback_token: str
    variables: dict[str, Any] = field(default_factory=dict)
    # Which playbook, and which of the deployment's runs this is (1, 2, ...: its first deploy,
    # then each retry, cancel teardown or destroy). A run is found again by (deployment, run).
    action: RunAction = RunAction.DEPLOY
    run: int = 1


class PipelineRunner(Protocol):
    # True when a run lives on the worker host that started it (its processes, its files):
    # then only that host's worker may watch or stop it.
    host_bound: ClassVar[bool]

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        """The deployment's run number `run` if it was started already (whatever its state), else
        None. Runs of one deployment are distinct: run 2 is never found as run 1."""

    def trigger(self, request: PipelineRequest) -> RunRef:
        """Start a run. Called only when `find_run` found none."""

    def status(self, ref: RunRef) -> RunStatus: ...

    def cancel(self, ref: RunRef) -> None: ...
