"""One deployment's trace, from its POST to its final history row: the real API (FastAPI's
instrumentation, temporalio's tracing interceptor on its client), the real worker and Temporal,
and the callback sent to the URL the run was given. Spans go to the OTel SDK's in-memory
exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from api.app import create_app
from db.session import SessionMaker
from settings import Settings
from telemetry.tracing import temporal_interceptors, traces_endpoint, with_trace_context
from tests.doubles import RecordingRunnerDouble
from tests.telemetry.deployment_run import launch, report_run, wait_status
from vocabulary.statuses import DeploymentStatus as S
from worker import build_worker


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
async def traced_api(
    settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, tracer_provider=spans[0])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def traced_worker(
    settings: Settings,
    temporal_address: str,
    sessionmaker: SessionMaker,
    runner: RecordingRunnerDouble,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> AsyncIterator[None]:
    interceptors = temporal_interceptors(spans[0], "provisio.worker")
    client = await Client.connect(temporal_address, interceptors=interceptors)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            yield


async def test_one_trace_from_the_post_to_the_final_history_row(
    traced_api: httpx.AsyncClient,
    traced_worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    exporter = spans[1]
    operator = await make_user("operator")
    exporter.clear()  # the sign-in's spans are another story
    deployment = await launch(traced_api, operator.headers, await make_template())
    await wait_status(traced_api, deployment, operator.headers, S.QUEUED)
    callback_target = await report_run(traced_api, runner, settings, deployment)
    await wait_status(traced_api, deployment, operator.headers, S.SUCCEEDED)

    finished: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    post = next(s for s in finished if s.name == "POST /api/deployments" and s.parent is None)
    trace_id = post.context.trace_id
    trace = [s for s in finished if s.context.trace_id == trace_id]
    names = {s.name for s in trace}
    # One span per request, none per ASGI message.
    assert not any(name.endswith((" http send", " http receive")) for name in names)

    # API → workflow → activities, by the workflow's start header.
    assert "StartWorkflow:DeployWorkflow" in names
    assert "RunWorkflow:DeployWorkflow" in names
    for activity in ("validate_deployment", "record_deployment", "start_pipeline"):
        assert f"RunActivity:{activity}" in names, activity
    # The run was handed the trace in its callback URL ...
    assert "traceparent=00-" + format(trace_id, "032x") in callback_target
    # ... and the callback continued it, signalling the workflow within it.
    callback = next(s for s in trace if s.name == "callback")
    assert any(link.context.is_valid for link in callback.links)  # its own request's span
    signals = [s for s in trace if s.name == "SignalWorkflow:pipeline_finished"]
    assert [s.parent.span_id for s in signals if s.parent] == [callback.context.span_id]
    assert "HandleSignal:pipeline_finished" in names
    # The final history row is written by an activity after the callback, in the same trace.
    after_callback = [
        s
        for s in trace
        if s.name == "RunActivity:record_step" and (s.start_time or 0) > (callback.start_time or 0)
    ]
    assert after_callback
    history = await traced_api.get(
        f"/api/deployments/{deployment['id']}/history", headers=operator.headers
    )
    assert history.json()[-1]["message"] == "Deployment succeeded"


def test_nothing_is_traced_and_urls_stay_as_they_are_without_a_span() -> None:
    url = "http://api:8000/api/deployments/7/callback?run=2"
    assert with_trace_context(url) == url


def test_a_bare_collector_address_gets_the_traces_path() -> None:
    base = Settings(otlp_endpoint="http://collector:4318")
    assert traces_endpoint(base) == "http://collector:4318/v1/traces"
    explicit = Settings(otlp_endpoint="http://collector:4318/custom/traces")
    assert traces_endpoint(explicit) == "http://collector:4318/custom/traces"
