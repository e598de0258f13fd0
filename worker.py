"""The Temporal worker: DeployWorkflow and every activity. Run as many as you like."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.deployment_activities import DeploymentActivities
from activities.pipeline_activities import PipelineActivities
from db.session import SessionMaker, create_engine, create_sessionmaker
from pipeline.factory import make_runner
from pipeline.runner import PipelineRunner
from settings import Settings, get_settings
from vocabulary.activities import activity_methods
from workflows.deploy import DeployWorkflow

log = logging.getLogger("provisio.worker")


def build_worker(
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    runner: PipelineRunner,
    executor: ThreadPoolExecutor,
    deployments: DeploymentActivities | None = None,
    pipelines: PipelineActivities | None = None,
) -> Worker:
    deployments = deployments or DeploymentActivities(sessionmaker)
    pipelines = pipelines or PipelineActivities(runner, settings)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[DeployWorkflow],
        activities=activity_methods(deployments, pipelines),
        # Runner calls block (python-jenkins, ansible-runner): they run on this pool.
        activity_executor=executor,
    )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = create_engine(settings.database_url)
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            worker = build_worker(
                client, settings, create_sessionmaker(engine), make_runner(settings), executor
            )
            log.info("worker polling %s", settings.temporal_task_queue)
            await worker.run()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker())
