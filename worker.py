"""The Temporal worker: DeployWorkflow, WebhookDeliveryWorkflow and every activity. Run as many
as you like.

Each worker polls two task queues: the shared one (workflows and every activity) and its host's
own, `<queue>@<host>` (the runner's calls only). A run of a host-bound runner (the local runner:
its processes and files are on the machine that started it) is started, watched and stopped
through its host's queue, so a status check never lands on a host that does not have the run.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.deployment_activities import DeploymentActivities
from activities.pipeline_activities import PipelineActivities
from activities.webhook_activities import WebhookActivities
from db.session import SessionMaker, create_engine, create_sessionmaker
from domain.callback_tokens import check_callback_secret
from domain.webhook_urls import check_webhook_settings
from pipeline.factory import make_runner
from pipeline.runner import PipelineRunner
from settings import Settings, get_settings
from telemetry.logs import configure_logging
from telemetry.tracing import configure_tracing, temporal_interceptors
from telemetry.worker_interceptor import ActivityTelemetryInterceptor
from telemetry.worker_metrics import RunMetrics, deployment_age_reader, worker_runtime
from vocabulary.activities import activity_methods
from workflows.deploy import DeployWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger("provisio.worker")

WORKFLOW_SOURCES = Path(__file__).resolve().parent / "workflows"


def write_workflow_bytecode() -> None:
    """The sandbox imports a workflow's module afresh for every workflow instance it creates (a
    start, a replay after eviction). Without bytecode on disk (PYTHONDONTWRITEBYTECODE, as this
    machine and the image set it) each of those compiles workflows/deploy.py from source again:
    a sixth of the worker's CPU per deployment in `make bench`. Written once here (py_compile
    writes regardless of that setting); a read-only tree keeps what the image compiled."""
    compileall.compile_dir(WORKFLOW_SOURCES, quiet=2)


class ProvisioWorker:
    """The shared queue's worker and this host's: they start, run and stop together."""

    def __init__(self, *workers: Worker) -> None:
        self._workers = workers

    async def run(self) -> None:
        await asyncio.gather(*(worker.run() for worker in self._workers))

    async def __aenter__(self) -> ProvisioWorker:
        for worker in self._workers:
            await worker.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for worker in reversed(self._workers):
            await worker.__aexit__(*exc_info)


def build_worker(
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    runner: PipelineRunner,
    executor: ThreadPoolExecutor,
    deployments: DeploymentActivities | None = None,
    pipelines: PipelineActivities | None = None,
) -> ProvisioWorker:
    write_workflow_bytecode()
    deployments = deployments or DeploymentActivities(
        sessionmaker, global_webhook=bool(settings.webhook_url)
    )
    pipelines = pipelines or PipelineActivities(runner, settings)
    webhooks = WebhookActivities(sessionmaker, settings)
    # Tracing comes with the client (its interceptors apply to its workers); this one is ours.
    interceptors = [
        ActivityTelemetryInterceptor(RunMetrics.of(client), deployment_age_reader(sessionmaker))
    ]
    shared = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[DeployWorkflow, WebhookDeliveryWorkflow],
        activities=activity_methods(deployments, pipelines, webhooks),
        max_cached_workflows=settings.worker_max_cached_workflows,
        # Runner calls block (python-jenkins, ansible-runner): they run on this pool.
        activity_executor=executor,
        interceptors=interceptors,
    )
    host = Worker(
        client,
        task_queue=settings.host_task_queue(),
        activities=[pipelines.start_pipeline, pipelines.pipeline_status, pipelines.cancel_pipeline],
        activity_executor=executor,
        interceptors=interceptors,
    )
    return ProvisioWorker(shared, host)


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    # Every run's callback token is made with it: refuse to start rather than fail each run.
    check_callback_secret(settings.callback_secret)
    # Likewise every event for the global receiver would be signed with its secret.
    check_webhook_settings(
        settings.webhook_url, settings.webhook_secret, allow_private=settings.webhook_allow_private
    )
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        # /metrics on PROVISIO_WORKER_METRICS_ADDRESS, traces when an OTLP endpoint is set.
        runtime=worker_runtime(settings),
        interceptors=temporal_interceptors(
            configure_tracing(settings, "provisio-worker"), "provisio.worker"
        ),
    )
    engine = create_engine(settings.database_url)
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            worker = build_worker(
                client, settings, create_sessionmaker(engine), make_runner(settings), executor
            )
            log.info(
                "worker polling %s and %s",
                settings.temporal_task_queue,
                settings.host_task_queue(),
            )
            await worker.run()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(run_worker())
