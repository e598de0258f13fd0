"""The manual runner: the pipeline runs elsewhere and reports through the signed callback (or an
operator sends the workflow's signals with `temporal workflow signal`). It starts nothing, so
triggering twice is harmless, and it cannot tell a run's state, so the workflow keeps waiting for
the callback until the deployment's timeout."""

from __future__ import annotations

from pipeline.runner import PipelineRequest
from vocabulary.runs import RunRef, RunState, RunStatus


class ManualRunner:
    def find_run(self, deployment_id: int) -> RunRef | None:
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        return RunRef(job_id=f"manual-{request.deployment_id}")

    def status(self, ref: RunRef) -> RunStatus:
        return RunStatus(state=RunState.UNKNOWN)

    def cancel(self, ref: RunRef) -> None:
        """Nothing runs here to stop."""
