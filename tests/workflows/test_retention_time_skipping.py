"""A failed deployment's teardown at the end of the default retention (a day), on Temporal's
time-skipping test server: the durable timer is the workflow's, not the test's patience."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from db.repository import insert_deployment, load_template_snapshot
from db.session import SessionMaker
from domain.validation import validate_deployment
from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.time_skipping import needs_test_server, start_time_skipping_server
from vocabulary.contracts import DeployRequest, PipelineFinished
from vocabulary.runs import RunAction
from worker import build_worker
from workflows import search_attributes as sa
from workflows.deploy import DeployWorkflow

DAY = 24 * 3600


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    """As the dev server's --search-attribute flags do: the workflow upserts them."""
    types = {key.name: int(key.indexed_value_type) for key in sa.ALL}
    request = AddSearchAttributesRequest(
        namespace=env.client.namespace,
        search_attributes=types,  # type: ignore[arg-type]
    )
    await env.client.operator_service.add_search_attributes(request)


@needs_test_server
async def test_the_default_retention_tears_a_failed_deployment_down_after_a_day(
    settings: Settings, sessionmaker: SessionMaker, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    workflow_id = f"deployment-{uuid.uuid4()}"
    request = DeployRequest(
        deployment_id=0,
        user_id=operator.id,
        username=operator.username,
        template_id=template_id,
        deployment_name="pg-kept",
        default_failure_retention_s=DAY,
        poll_interval_s=3600,
        default_callback_timeout_s=6 * 3600,
    )
    async with sessionmaker.begin() as session:  # as the API records it
        deployment = validate_deployment(
            await load_template_snapshot(session, template_id), request
        )
        new = await insert_deployment(
            session,
            workflow_id=workflow_id,
            user_id=operator.id,
            deployment_name="pg-kept",
            deployment=deployment,
        )
    assert new is not None
    request.deployment_id = new.id

    runner = RecordingRunnerDouble()
    env, _ = await start_time_skipping_server()
    async with env:
        await register_search_attributes(env)
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(env.client, settings, sessionmaker, runner, executor):
                handle = await env.client.start_workflow(
                    DeployWorkflow.run,
                    request,
                    id=workflow_id,
                    task_queue=settings.temporal_task_queue,
                )

                async def status_is(wanted: str) -> bool:
                    return await handle.query(DeployWorkflow.status) == wanted

                await wait_for(lambda: status_is("queued"))
                await handle.signal(
                    DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, "broke", run=1)
                )
                await wait_for(lambda: status_is("failed"))

                await env.sleep(timedelta(seconds=DAY - 3600))
                assert await handle.query(DeployWorkflow.status) == "failed"
                assert len(runner.triggers) == 1  # still kept, for inspection or a retry

                await env.sleep(timedelta(hours=2))
                await wait_for(lambda: status_is("destroying"))
                assert [(t.run, t.action) for t in runner.triggers] == [
                    (1, RunAction.DEPLOY),
                    (2, RunAction.DESTROY),
                ]
                await handle.signal(
                    DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2)
                )
                result = await handle.result()
    assert result.status == "destroyed"
