"""`GET /metrics` of the API: request latencies by route template, deployments by status, the
callback ingestion and the open event streams, after real requests through the real app."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.stream_slots import StreamSlots
from settings import Settings
from tests.callback_events import event, signed
from tests.doubles import RecordingRunnerDouble
from tests.telemetry.deployment_run import launch, report_run, wait_status
from vocabulary.statuses import DeploymentStatus as S


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_timed_by_route_template_not_raw_path(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    operator = await make_user("operator")
    route = "/api/deployments/{deployment_id}"
    before = await scrape(api)
    for missing in (900001, 900002, 900003):
        r = await api.get(f"/api/deployments/{missing}", headers=operator.headers)
        assert r.status_code == 404
    await api.get("/no/such/path/42")
    for made_up in ("BREW", "WHEN"):
        await api.request(made_up, "/api/health")
    after = await scrape(api)

    count = "provisio_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": route, "status": "404"}
    assert value(after, count, **labels) - value(before, count, **labels) == 3
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, count, **unmatched) - value(before, count, **unmatched) == 1
    other = {"method": "OTHER", "route": "/api/health", "status": "405"}
    assert value(after, count, **other) - value(before, count, **other) == 2
    # No label holds a raw path or a made-up method.
    assert not any(
        word in str(key) for key in after for word in ("900001", "/no/such", "BREW", "WHEN")
    )


async def test_deployments_by_status_and_callbacks_ingested_and_rejected(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    deployment = await launch(api, operator.headers, await make_template())
    await wait_status(api, deployment, operator.headers, S.QUEUED)
    queued = await scrape(api)
    # The tables are this test's own: one deployment, queued; every other status at zero.
    assert value(queued, "provisio_deployments", status="queued") == 1
    assert value(queued, "provisio_deployments", status="succeeded") == 0
    assert ("provisio_deployments", (("status", "cancelled"),)) in queued

    url = await report_run(api, runner, settings, deployment)
    await wait_status(api, deployment, operator.headers, S.SUCCEEDED)
    # A forged request is refused and counted as refused, not as ingested.
    body, headers = signed("not-the-token", {"events": [event(9, "runner_on_ok", "web-1")]})
    assert (await api.post(url, content=body, headers=headers)).status_code == 401
    done = await scrape(api)

    assert value(done, "provisio_deployments", status="succeeded") == 1
    assert value(done, "provisio_deployments", status="queued") == 0
    stored = "provisio_callback_events_stored_total"
    assert value(done, stored) - value(queued, stored) == 3
    received = "provisio_callback_events_received_total"
    assert value(done, received) - value(queued, received) == 3
    rejected = "provisio_callback_requests_rejected_total"
    assert value(done, rejected, status="401") - value(queued, rejected, status="401") == 1
    # The events were stamped just before they were sent: their lag is under a minute.
    lag_count = "provisio_callback_event_lag_seconds_count"
    assert value(done, lag_count) - value(queued, lag_count) == 1
    under_a_minute = "provisio_callback_event_lag_seconds_bucket"
    assert value(done, under_a_minute, le="60.0") - value(queued, under_a_minute, le="60.0") == 1
    callback = {"method": "POST", "route": "/api/deployments/{deployment_id}/callback"}
    count = "provisio_http_request_duration_seconds_count"
    assert (
        value(done, count, **callback, status="200")
        - value(queued, count, **callback, status="200")
        == 1
    )


async def test_open_event_streams_are_counted_until_given_back(api: httpx.AsyncClient) -> None:
    slots = StreamSlots(per_user=2)
    before = value(await scrape(api), "provisio_event_streams_open")
    first, second = slots.take(1), slots.take(2)
    assert value(await scrape(api), "provisio_event_streams_open") - before == 2
    first.release()
    first.release()  # given back once, however often
    second.release()
    assert value(await scrape(api), "provisio_event_streams_open") == before
