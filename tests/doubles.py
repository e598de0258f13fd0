"""Test doubles for external systems that are not the subject of a test (named as doubles)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pipeline.runner import PipelineRequest
from vocabulary.runs import RunRef, RunState, RunStatus


@dataclass
class RecordingRunnerDouble:
    """A pipeline runner double: remembers every trigger and reports a settable state."""

    state: RunState = RunState.UNKNOWN
    reason: str | None = None
    stats: dict[str, object] | None = None
    triggers: list[PipelineRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find_run(self, deployment_id: int) -> RunRef | None:
        with self._lock:
            for request in self.triggers:
                if request.deployment_id == deployment_id:
                    return RunRef(job_id=f"double-{deployment_id}")
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        with self._lock:
            self.triggers.append(request)
        return RunRef(job_id=f"double-{request.deployment_id}")

    def status(self, ref: RunRef) -> RunStatus:
        return RunStatus(state=self.state, reason=self.reason, stats=self.stats)

    def cancel(self, ref: RunRef) -> None:
        with self._lock:
            self.cancelled.append(ref.job_id)
