"""Structured logs: JSON lines that carry the deployment's ids, from a record's own extras, from
the deployment a task works for, or from Temporal's logger adapters; and, through the real
worker, on a line an activity's code writes without naming the deployment."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from api.app import create_app
from pipeline.runner import PipelineRequest
from settings import Settings
from telemetry.logs import JsonFormatter, TextFormatter, configure_logging, deployment_context
from tests.doubles import RecordingRunnerDouble
from tests.telemetry.deployment_run import launch, report_run, wait_status
from tests.telemetry.logging_workflow import LoggingWorkflow
from vocabulary.runs import RunRef
from vocabulary.statuses import DeploymentStatus as S
from workflows.search_attributes import DEPLOYMENT_ID


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    line = logging.LogRecord("provisio.test", logging.INFO, __file__, 1, message, None, None)
    line.__dict__.update(extra)
    return line


def as_json(line: logging.LogRecord) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(line))
    return parsed


def test_a_line_outside_any_deployment_names_none() -> None:
    line = as_json(record("worker polling"))
    assert line["message"] == "worker polling"
    assert line["level"] == "info"
    assert line["logger"] == "provisio.test"
    assert "deployment_id" not in line and "workflow_id" not in line


def test_the_deployment_a_task_works_for_is_on_its_lines() -> None:
    with deployment_context(42, "deployment-abc"):
        inside = as_json(record())
        # A line that names its own deployment keeps it.
        own = as_json(record(deployment_id=7, workflow_id="deployment-own"))
    after = as_json(record())
    assert (inside["deployment_id"], inside["workflow_id"]) == (42, "deployment-abc")
    assert (own["deployment_id"], own["workflow_id"]) == (7, "deployment-own")
    assert "deployment_id" not in after


def test_temporal_adapters_give_the_workflow_id_and_extras_are_kept() -> None:
    activity = {"workflow_id": "deployment-xyz", "activity_type": "record_step"}
    line = as_json(record(temporal_activity=activity, job_id="local-3-1", deployment_id=3))
    assert (line["deployment_id"], line["workflow_id"], line["job_id"]) == (
        3,
        "deployment-xyz",
        "local-3-1",
    )
    workflow = as_json(record(temporal_workflow={"workflow_id": "deployment-wf"}))
    assert workflow["workflow_id"] == "deployment-wf"
    assert "temporal_workflow" not in workflow
    # uvicorn's coloured copy of the message is for terminals only.
    assert "color_message" not in as_json(record(color_message="\x1b[32mStarted\x1b[0m"))


def test_exceptions_are_one_field_and_a_terminal_gets_text() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = record()
        line.exc_info = __import__("sys").exc_info()
    parsed = as_json(line)
    assert "RuntimeError: boom" in parsed["exception"]
    with deployment_context(5, "deployment-t"):
        text = TextFormatter().format(record("started"))
    assert text.endswith("started [deployment_id=5 workflow_id=deployment-t]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_off_a_terminal_text_on_one() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for stream, is_json in ((io.StringIO(), True), (_Terminal(), False)):
            configure_logging(stream=stream)
            logging.getLogger("provisio.test").info("one line")
            written = stream.getvalue()
            assert written.startswith("{") is is_json, written
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


class LoggingRunnerDouble(RecordingRunnerDouble):
    """Logs as a runner library would: a plain logger, no deployment named on the line."""

    def trigger(self, request: PipelineRequest) -> RunRef:
        logging.getLogger("tests.runner").info("run triggered")
        return super().trigger(request)


@pytest.fixture
def runner() -> RecordingRunnerDouble:
    return LoggingRunnerDouble()


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # A uvicorn served earlier in this process (log_level="warning") leaves its access logger
    # at WARNING: as `provisio api` runs, it passes INFO lines to the root handler.
    access = logging.getLogger("uvicorn.access")
    access_level, access_propagate = access.level, access.propagate
    access.setLevel(logging.NOTSET)
    access.propagate = True
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    access.setLevel(access_level)
    access.propagate = access_propagate


async def test_an_activitys_lines_carry_its_deployment(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
    json_lines: io.StringIO,
) -> None:
    operator = await make_user("operator")
    deployment = await launch(api, operator.headers, await make_template())
    await wait_status(api, deployment, operator.headers, S.QUEUED)
    await report_run(api, runner, settings, deployment)
    await wait_status(api, deployment, operator.headers, S.SUCCEEDED)

    lines = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    # Written on the worker's thread pool by code that knows nothing of the deployment.
    triggered = [line for line in lines if line["logger"] == "tests.runner"]
    assert len(triggered) == 1
    assert triggered[0]["deployment_id"] == deployment["id"]
    assert triggered[0]["workflow_id"] == deployment["workflow_id"]


async def test_a_workflows_lines_carry_its_deployment(
    client: Client, json_lines: io.StringIO
) -> None:
    queue, workflow_id = f"logs-{uuid.uuid4()}", f"deployment-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[LoggingWorkflow]):
        await client.execute_workflow(
            LoggingWorkflow.run,
            id=workflow_id,
            task_queue=queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(DEPLOYMENT_ID, 4242)]),
        )
    lines = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    (line,) = [line for line in lines if line["message"].startswith("could not stop")]
    assert (line["deployment_id"], line["workflow_id"]) == (4242, workflow_id)


async def call(app: Any, path: str) -> int:
    """One GET through the ASGI app; the response's status, logged as uvicorn's access line is,
    while the response starts."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            logging.getLogger("uvicorn.access").info('"GET %s HTTP/1.1" %d', path, status)

    await app(scope, receive, send)
    return status


async def test_a_requests_access_line_names_the_deployment_in_its_path(
    settings: Settings, json_lines: io.StringIO
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert await call(app, "/api/deployments/77") == 401
        assert await call(app, "/api/deployments/78/history") == 401
        assert await call(app, "/api/deployments/not-a-number") == 404  # no deployment's path
        assert await call(app, "/api/templates") == 401
    access = [
        json.loads(text)
        for text in json_lines.getvalue().splitlines()
        if json.loads(text)["logger"] == "uvicorn.access"
    ]
    assert [line.get("deployment_id") for line in access] == [77, 78, None, None]
