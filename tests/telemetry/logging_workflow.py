"""A workflow that logs one line through workflow.logger, as DeployWorkflow does (a module of its
own: the sandbox imports it again, and it must import nothing the sandbox refuses)."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class LoggingWorkflow:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.warning("could not stop pipeline run")
