"""Test doubles for external systems that are not the subject of a test (named as doubles)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import ClassVar

from pipeline.runner import PipelineRequest
from vocabulary.runs import RunAction, RunRef, RunState, RunStatus


@dataclass
class RecordingRunnerDouble:
    """A pipeline runner double: remembers every trigger (each request carries its action and run
    number) and every cancel, and reports a settable state.

    Job ids are `double-<deployment id>` for a deployment's first run and
    `double-<deployment id>-<run>` for the runs after it."""

    host_bound: ClassVar[bool] = False

    state: RunState = RunState.UNKNOWN
    reason: str | None = None
    stats: dict[str, object] | None = None
    triggers: list[PipelineRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        with self._lock:
            for request in self.triggers:
                if request.deployment_id == deployment_id and request.run == run:
                    return self.ref_of(deployment_id, run)
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        with self._lock:
            self.triggers.append(request)
        return self.ref_of(request.deployment_id, request.run)

    def status(self, ref: RunRef) -> RunStatus:
        return RunStatus(state=self.state, reason=self.reason, stats=self.stats)

    def cancel(self, ref: RunRef) -> None:
        with self._lock:
            self.cancelled.append(ref.job_id)

    # -- for assertions -------------------------------------------------------------------------

    @staticmethod
    def ref_of(deployment_id: int, run: int = 1) -> RunRef:
        suffix = "" if run == 1 else f"-{run}"
        return RunRef(job_id=f"double-{deployment_id}{suffix}")

    def actions(self, deployment_id: int) -> list[tuple[int, RunAction]]:
        """(run, action) of each trigger for the deployment, in order."""
        with self._lock:
            return [(r.run, r.action) for r in self.triggers if r.deployment_id == deployment_id]
