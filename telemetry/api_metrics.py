"""The API's Prometheus metrics and the middleware that times every request.

The metrics live in prometheus_client's default registry, one per API process. Several API
processes behind one port answer for all of them with prometheus_client's multiprocess mode:
`PROMETHEUS_MULTIPROC_DIR` set (to an emptied directory) before the processes start, and
`mark_process_dead(pid)` when one ends; `/metrics` then reads every process's files
(`current_registry`), and the gauges say how their processes' values combine.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_DURATION = Histogram(
    "provisio_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte, by route template.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEPLOYMENTS = Gauge(
    "provisio_deployments",
    "Deployments by status (read at each scrape).",
    ["status"],
    # Every process counts the same table: the latest count is the count.
    multiprocess_mode="mostrecent",
)
CALLBACK_EVENTS_RECEIVED = Counter(
    "provisio_callback_events_received_total",
    "Callback events in signed, valid requests (replays of a stored event included).",
)
CALLBACK_EVENTS_STORED = Counter(
    "provisio_callback_events_stored_total",
    "Callback events stored as history rows (each event once).",
)
CALLBACK_REJECTED = Counter(
    "provisio_callback_requests_rejected_total",
    "Callback requests refused, by the answer's status code.",
    ["status"],
)
CALLBACK_LAG = Histogram(
    "provisio_callback_event_lag_seconds",
    "From a batch's oldest event (its own timestamp) to its storage.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
EVENT_STREAMS_OPEN = Gauge(
    "provisio_event_streams_open",
    "Live event streams open in the API's processes.",
    multiprocess_mode="livesum",
)

# Requests no route matched are counted under one label, never their raw path (unbounded), and
# a method outside HTTP's own under one too: labels a client cannot multiply.
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def current_registry() -> CollectorRegistry:
    """What `/metrics` serves: this process's registry, or every API process's metrics when
    prometheus_client runs in multiprocess mode (its own variable, read once at import)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class RequestMetricsMiddleware:
    """Pure ASGI: times each HTTP request into REQUEST_DURATION under its route's template.

    The router writes the matched route into the scope while handling the request, so the label
    is read after the app returns; histogram children are cached per label set, so a request
    costs a dict lookup and one observe."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            # The template without its converters: {deployment_id:int} is {deployment_id}.
            template = getattr(route, "path_format", None) or UNMATCHED_ROUTE
            method = scope["method"]
            key = (method if method in HTTP_METHODS else OTHER_METHOD, template, status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = REQUEST_DURATION.labels(*key)
            child.observe(time.perf_counter() - started)


def observe_callback_lag(events: list[dict[str, Any]]) -> None:
    """The lag of a stored batch: now minus its oldest event's timestamp (ISO 8601, UTC)."""
    stamps = [event["timestamp"] for event in events if event.get("timestamp")]
    if not stamps:
        return
    try:
        oldest = datetime.fromisoformat(min(stamps))
    except ValueError:
        return
    CALLBACK_LAG.observe(max(0.0, time.time() - oldest.timestamp()))
