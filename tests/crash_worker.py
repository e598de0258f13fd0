"""A real worker process that hangs right after a side effect, so that a test can SIGKILL it
after the side effect and before Temporal hears of the completion.

    python -m tests.crash_worker record MARKER     the workflow's own recording of the
                                                   deployment hangs after its commit
    python -m tests.crash_worker disks MARKER      the disks step hangs after its commit
    python -m tests.crash_worker teardown MARKER   the local runner's teardown run is started,
                                                   then the trigger step hangs

Settings come from PROVISIO_* variables.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio import activity
from temporalio.client import Client

from activities.deployment_activities import DeploymentActivities
from activities.pipeline_activities import PipelineActivities
from db.session import SessionMaker, create_engine, create_sessionmaker
from pipeline.local_runner import LocalRunner
from pipeline.manual_runner import ManualRunner
from pipeline.runner import PipelineRunner
from settings import Settings, get_settings
from vocabulary.contracts import DisksAllocatedInput, RecordDeploymentInput, StartPipelineInput
from vocabulary.runs import RunAction, RunRef


def hang(marker: Path, text: str) -> None:
    marker.write_text(text)
    time.sleep(3600)  # blocks the whole process: it can only die now


class HangAfterRecord(DeploymentActivities):
    def __init__(self, sessionmaker: SessionMaker, marker: Path) -> None:
        super().__init__(sessionmaker)
        self._marker = marker

    @activity.defn
    async def record_deployment(self, data: RecordDeploymentInput) -> None:
        await super().record_deployment(data)
        hang(self._marker, str(data.deployment_id))


class HangAfterDisks(DeploymentActivities):
    def __init__(self, sessionmaker: SessionMaker, marker: Path) -> None:
        super().__init__(sessionmaker)
        self._marker = marker

    @activity.defn
    async def record_disks_allocated(self, data: DisksAllocatedInput) -> None:
        await super().record_disks_allocated(data)
        hang(self._marker, str(data.deployment_id))


class HangAfterTeardownStarts(PipelineActivities):
    def __init__(self, runner: PipelineRunner, settings: Settings, marker: Path) -> None:
        super().__init__(runner, settings)
        self._marker = marker

    @activity.defn
    def start_pipeline(self, data: StartPipelineInput) -> RunRef:
        ref = super().start_pipeline(data)
        if data.action == RunAction.DESTROY:
            hang(self._marker, ref.job_id)
        return ref


async def main(mode: str, marker: Path) -> None:
    from worker import build_worker

    settings = get_settings()
    client = await Client.connect(settings.temporal_address)
    sessionmaker = create_sessionmaker(create_engine(settings.database_url))
    runner: PipelineRunner = LocalRunner(settings) if mode == "teardown" else ManualRunner()
    deployments = {
        "record": HangAfterRecord(sessionmaker, marker),
        "disks": HangAfterDisks(sessionmaker, marker),
    }.get(mode)
    pipelines = HangAfterTeardownStarts(runner, settings, marker) if mode == "teardown" else None
    with ThreadPoolExecutor(max_workers=2) as executor:
        worker = build_worker(
            client,
            settings,
            sessionmaker,
            runner,
            executor,
            deployments=deployments,
            pipelines=pipelines,
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
