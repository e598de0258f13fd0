"""A deployment's trace with every part real: the API served by uvicorn, the worker with the
local runner, ansible-playbook, and the signed callback plugin sending its events to the URL the
run was given. The trace runs from the POST through the plugin's callbacks to the final row."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from api.app import create_app
from db.models import Template, TemplateDiskAllocation
from db.session import SessionMaker
from pipeline.local_runner import LocalRunner
from settings import Settings
from telemetry.tracing import temporal_interceptors
from tests.conftest import wait_for
from worker import build_worker


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def local_settings(settings: Settings, tmp_path: Path) -> Settings:
    settings.runner_dir = tmp_path / "runs"
    settings.sandbox_root = tmp_path / "sandbox"
    settings.disk_backend = "directory"
    settings.default_callback_timeout_s = 240
    return settings


@pytest.fixture
async def traced_live_api(
    local_settings: Settings,
    api_socket: socket.socket,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> AsyncIterator[str]:
    """The traced API on `public_url` (its socket bound by the fixtures), where the callback
    plugin sends its events; started and stopped like `live_api`."""
    app = create_app(local_settings, tracer_provider=spans[0])
    port = api_socket.getsockname()[1]
    # log_config=None, as provisio api runs: uvicorn's own logging setup would outlive this test.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [api_socket]}, daemon=True)
    thread.start()

    async def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        return server.started

    await wait_for(started, timeout_s=30, interval_s=0.05)
    yield local_settings.public_url
    server.should_exit = True
    await asyncio.to_thread(thread.join, 30)


@pytest.fixture
async def traced_local_worker(
    temporal_address: str,
    local_settings: Settings,
    sessionmaker: SessionMaker,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> AsyncIterator[None]:
    client = await Client.connect(
        temporal_address, interceptors=temporal_interceptors(spans[0], "provisio.worker")
    )
    with ThreadPoolExecutor(max_workers=4) as executor:
        runner = LocalRunner(local_settings)
        async with build_worker(client, local_settings, sessionmaker, runner, executor):
            yield


async def one_disk_template(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name="traced",
            service_type="postgresql",
            configuration={"max_connections": 100},
            disk_allocations=[
                TemplateDiskAllocation(
                    disk_type="ssd",
                    size_gb=1,
                    mount_point="/data/pgdata",
                    volume_group="vg_data",
                    logical_volume="lv_data",
                    filesystem_type="ext4",
                )
            ],
        )
        session.add(template)
        await session.flush()
        return template.id


async def test_the_trace_follows_the_real_run_and_its_plugin_callbacks(
    traced_live_api: str,
    traced_local_worker: None,
    make_user: Any,
    sessionmaker: SessionMaker,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    exporter = spans[1]
    operator = await make_user("operator")
    template_id = await one_disk_template(sessionmaker)
    async with httpx.AsyncClient(base_url=traced_live_api) as http:
        created = await http.post(
            "/api/deployments",
            json={"template_id": template_id, "deployment_name": "pg-traced"},
            headers=operator.headers,
        )
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]

        async def settled() -> Any:
            r = await http.get(f"/api/deployments/{deployment_id}", headers=operator.headers)
            return r.json() if r.json()["status"] in ("succeeded", "failed") else None

        final = await wait_for(settled, timeout_s=180, interval_s=0.5)
    assert final["status"] == "succeeded"

    finished = exporter.get_finished_spans()
    post = next(s for s in finished if s.name == "POST /api/deployments" and s.parent is None)
    trace = [s for s in finished if s.context.trace_id == post.context.trace_id]
    names = [s.name for s in trace]
    # The plugin's requests continued the trace its run was given: at least the playbook's start
    # and its stats, each signalling the workflow inside the trace.
    assert names.count("callback") >= 1
    assert "SignalWorkflow:pipeline_finished" in names
    assert "HandleSignal:pipeline_finished" in names
    callbacks = [s for s in trace if s.name == "callback"]
    last_callback = max(s.start_time or 0 for s in callbacks)
    assert any(
        s.name == "RunActivity:record_step" and (s.start_time or 0) > last_callback for s in trace
    )
    # Each plugin request's own server span is linked from its callback span.
    server_spans = {
        s.context.span_id for s in finished if s.name.startswith("POST /api/deployments/")
    }
    for callback in callbacks:
        assert {link.context.span_id for link in callback.links} <= server_spans
        assert callback.links
