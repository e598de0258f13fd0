"""The manual runner: the pipeline runs elsewhere and reports through the signed callback (or an
operator sends the workflow's signals with `temporal workflow signal`). It starts nothing, so
triggering twice is harmless, and it cannot tell a run's state, so the workflow keeps waiting for
the callback until the deployment's timeout. Whoever runs the pipeline learns the action (deploy or
destroy) and the run number from the job id and the workflow's history."""

from __future__ import annotations

from typing import ClassVar

from pipeline.runner import PipelineRequest
from vocabulary.runs import RunRef, RunState, RunStatus

JOB_PREFIX = "manual-"


class ManualRunner:
    host_bound: ClassVar[bool] = False

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        """`manual-<deployment id>-<run>`: nothing is started."""
        return RunRef(job_id=f"{JOB_PREFIX}{int(request.deployment_id)}-{int(request.run)}")

    def status(self, ref: RunRef) -> RunStatus:
        return RunStatus(state=RunState.UNKNOWN)

    def cancel(self, ref: RunRef) -> None:
        """Nothing runs here to stop: whoever runs the pipeline stops it."""
