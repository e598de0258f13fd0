"""The worker's /metrics (served by temporalio's runtime on PROVISIO_WORKER_METRICS_ADDRESS):
the SDK's own metrics, activity latencies by name, and the pipeline runs started and finished,
after one deployment through the real worker, API and Temporal; and every metric the Grafana
dashboard (deploy/grafana/dashboards/provisio.json) queries is one of those or the API's."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from db.session import SessionMaker
from settings import Settings
from tests.callback_events import event, signed
from tests.doubles import RecordingRunnerDouble
from tests.telemetry.deployment_run import launch, report_run, wait_status
from tests.telemetry.metrics_runtime import metrics_runtime
from vocabulary.statuses import DeploymentStatus as S
from worker import build_worker

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "provisio.json"
METRIC_NAME = re.compile(r"\b(?:provisio|temporal)_[a-z_]+\b")


@pytest.fixture
async def metrics_worker(
    settings: Settings,
    temporal_address: str,
    sessionmaker: SessionMaker,
    runner: RecordingRunnerDouble,
) -> AsyncIterator[str]:
    """A worker whose client runs on a runtime serving /metrics; that endpoint's URL."""
    runtime, address = metrics_runtime(settings)
    client = await Client.connect(temporal_address, runtime=runtime)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            yield f"http://{address}/metrics"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def find(found: dict[Any, float], name: str, **labels: str) -> float | None:
    """The sample of that name whose labels include these (other labels, any value)."""
    wanted = set(labels.items())
    for (sample, sample_labels), value in found.items():
        if sample == name and wanted <= sample_labels:
            return value
    return None


async def test_worker_metrics_show_activities_and_runs(
    api: httpx.AsyncClient,
    metrics_worker: str,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    launched_at = time.monotonic()
    deployment = await launch(api, operator.headers, await make_template())
    await wait_status(api, deployment, operator.headers, S.QUEUED)
    callback_url = await report_run(api, runner, settings, deployment)
    await wait_status(api, deployment, operator.headers, S.SUCCEEDED)
    # A refused callback, so that the dashboard's refusals have their series.
    body, headers = signed("not-the-token", {"events": [event(9, "runner_on_ok", "web-1")]})
    assert (await api.post(callback_url, content=body, headers=headers)).status_code == 401

    async with httpx.AsyncClient() as http:
        response = await http.get(metrics_worker)
    assert response.status_code == 200
    found = samples(response.text)
    # This runtime served only this test's worker: the counts are this deployment's.
    assert find(found, "provisio_pipeline_runs_started_total", action="deploy") == 1
    assert find(found, "provisio_pipeline_runs_finished_total", outcome="succeeded") == 1
    assert find(found, "provisio_pipeline_runs_finished_total", outcome="failed") is None
    # From its creation to succeeded: seconds here, within the test's own time.
    duration = "provisio_deployment_duration_seconds"
    assert find(found, f"{duration}_count", outcome="succeeded") == 1
    assert find(found, f"{duration}_bucket", outcome="succeeded", le="60") == 1
    took = find(found, f"{duration}_sum", outcome="succeeded")
    assert took is not None and 0 < took <= time.monotonic() - launched_at + 1
    # temporalio's own: activity latencies by activity type (database steps are local
    # activities, the runner's calls ordinary ones), workflow task latencies.
    for latency, activity_type in (
        ("temporal_local_activity_execution_latency_count", "validate_deployment"),
        ("temporal_local_activity_execution_latency_count", "record_step"),
        ("temporal_activity_execution_latency_count", "start_pipeline"),
    ):
        count = find(found, latency, activity_type=activity_type)
        assert count is not None and count >= 1, activity_type
    assert find(found, "temporal_workflow_task_execution_latency_count") is not None

    api_metrics = await api.get("/metrics")
    served = {name for name, _ in found} | {name for name, _ in samples(api_metrics.text)}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert len(queried) >= 10
    assert queried <= served, queried - served
