"""The baseline: a bare Temporal workflow with DeployWorkflow's shape and none of its work.

The same seven activities in the same order (validate, create, clone disks, trigger, record
triggered, record `running`, record the result), each a no-op; the same two signals
(`pipeline_started`, `pipeline_finished`, with the same payload types), sent right after the
no-op trigger as the bench runner's callback is; the same activity timeouts and retry policies.
No database, no HTTP, no search attributes: what is left is the engine's own cost, on the same
Temporal server and with the same worker settings as the product's worker.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from vocabulary.contracts import PipelineFinished, PipelineStarted
    from vocabulary.statuses import DeploymentStatus as S

BASELINE_TASK_QUEUE = "bench-bare"
# As DeployWorkflow's DB_STEP and TRIGGER options.
DB_STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
TRIGGER: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
}


@dataclass
class BareInput:
    # A held run gets no signals (launch latency): it waits, as a held deployment does.
    hold: bool = False


@dataclass
class BareStep:
    name: str


@dataclass
class BareTrigger:
    hold: bool = False


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._started: PipelineStarted | None = None
        self._finished: PipelineFinished | None = None
        self._running_recorded = False
        self._waiting = False

    @workflow.run
    async def run(self, data: BareInput) -> str:
        await self._step("validate")
        await self._step("create")
        await self._step("clone_disks")
        await workflow.execute_activity("bare_trigger", BareTrigger(data.hold), **TRIGGER)
        await self._step("record_triggered")
        self._waiting = True
        while True:
            if self._started is not None and not self._running_recorded:
                await self._step("record_running")
                self._running_recorded = True
            if self._finished is not None:
                break
            await workflow.wait_condition(
                lambda: (
                    self._finished is not None
                    or (self._started is not None and not self._running_recorded)
                )
            )
        await self._step("record_result")
        return S.SUCCEEDED.value

    @workflow.query
    def waiting(self) -> bool:
        """Whether the run has reached the wait for its callback (the bench drains on it)."""
        return self._waiting

    @workflow.signal
    def pipeline_started(self, event: PipelineStarted) -> None:
        self._started = self._started or event

    @workflow.signal
    def pipeline_finished(self, event: PipelineFinished) -> None:
        self._finished = self._finished or event

    async def _step(self, name: str) -> None:
        await workflow.execute_activity("bare_step", BareStep(name), **DB_STEP)


class BareActivities:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._signals: set[asyncio.Task[None]] = set()

    @activity.defn(name="bare_step")
    async def step(self, data: BareStep) -> None:
        """Does nothing: the database step's place in the workflow, without the database."""

    @activity.defn(name="bare_trigger")
    async def trigger(self, data: BareTrigger) -> None:
        """Starts nothing; the "run" signals its start and its end right after, as the bench
        runner's callback does."""
        if data.hold:
            return
        task = asyncio.create_task(self._signal(activity.info().workflow_id or ""))
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def _signal(self, workflow_id: str) -> None:
        handle = self._client.get_workflow_handle(workflow_id)
        await handle.signal(BareWorkflow.pipeline_started, PipelineStarted({"bench": True}))
        stats = {"host-000": {"ok": 0, "changed": 0, "failures": 0, "unreachable": 0}}
        await handle.signal(BareWorkflow.pipeline_finished, PipelineFinished(True, stats))


def build_baseline_worker(client: Client, executor: ThreadPoolExecutor) -> Worker:
    """Settings as worker.build_worker's: defaults plus the activity thread pool."""
    activities = BareActivities(client)
    return Worker(
        client,
        task_queue=BASELINE_TASK_QUEUE,
        workflows=[BareWorkflow],
        activities=[activities.step, activities.trigger],
        activity_executor=executor,
    )
