"""Structured logs: one JSON object per line when stderr is not a terminal, and on every line
about a deployment its `deployment_id` and `workflow_id`.

Where the ids come from, first found wins:
1. the record's own `extra={"deployment_id": ..., "workflow_id": ...}`;
2. the deployment this task is working for (`deployment_context`), which the worker's
   interceptor sets around each activity, the callback endpoint for its request, and
   `RequestDeploymentMiddleware` for a request whose path names a deployment;
3. Temporal's logger adapters: `workflow.logger` and `activity.logger` attach
   `temporal_workflow` / `temporal_activity` dicts that hold the workflow id; a workflow's line
   is formatted while its task runs, so its `DeploymentId` search attribute (set when the API
   starts the workflow) gives the deployment id.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio import workflow

from workflows.search_attributes import DEPLOYMENT_ID

# (deployment_id, workflow_id) of the deployment the current task works for.
_current: ContextVar[tuple[int | None, str | None]] = ContextVar(
    "provisio_deployment", default=(None, None)
)

# What every LogRecord has; anything else on a record came from `extra` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "deployment_id",
    "workflow_id",
    "temporal_workflow",
    "temporal_activity",
    # uvicorn's copy of its message with terminal colours.
    "color_message",
}


@contextmanager
def deployment_context(deployment_id: int | None, workflow_id: str | None) -> Iterator[None]:
    """Log lines written inside carry these ids (unless a line names its own)."""
    token = _current.set((deployment_id, workflow_id))
    try:
        yield
    finally:
        _current.reset(token)


def set_deployment_context(deployment_id: int | None, workflow_id: str | None) -> None:
    """For a request: the ids hold until it ends (RequestDeploymentMiddleware restores them)."""
    _current.set((deployment_id, workflow_id))


class RequestDeploymentMiddleware:
    """A request whose path names a deployment (`{deployment_id}`) logs it from its response's
    start on: uvicorn writes the access line while sending that start, in the request's task.
    A route that knows the workflow id too (the callback endpoint) has set both already."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = str(scope.get("path_params", {}).get("deployment_id", ""))
                deployment_id, workflow_id = _current.get()
                # As the route reads it: ASCII digits of a bigint, else no deployment is named.
                if deployment_id is None and raw.isascii() and raw.isdigit() and len(raw) < 19:
                    _current.set((int(raw), workflow_id))
            await send(message)

        # Whatever the request sets holds for it alone, even where requests share a task.
        token = _current.set(_current.get())
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            _current.reset(token)


def deployment_ids(record: logging.LogRecord) -> tuple[int | None, str | None]:
    deployment_id = getattr(record, "deployment_id", None)
    workflow_id = getattr(record, "workflow_id", None)
    context_deployment, context_workflow = _current.get()
    if deployment_id is None:
        deployment_id = context_deployment
    if workflow_id is None:
        workflow_id = context_workflow
    if workflow_id is None:
        temporal = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        if isinstance(temporal, dict):
            workflow_id = temporal.get("workflow_id")
    if deployment_id is None and hasattr(record, "temporal_workflow"):
        deployment_id = _workflow_deployment_id()
    return deployment_id, workflow_id


def _workflow_deployment_id() -> int | None:
    if not workflow.in_workflow():
        return None
    return workflow.info().typed_search_attributes.get(DEPLOYMENT_ID)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the deployment's ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        deployment_id, workflow_id = deployment_ids(record)
        if deployment_id is not None:
            line["deployment_id"] = deployment_id
        if workflow_id is not None:
            line["workflow_id"] = workflow_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: the usual line, with the deployment's ids appended when there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        deployment_id, workflow_id = deployment_ids(record)
        ids = " ".join(
            f"{name}={value}"
            for name, value in (("deployment_id", deployment_id), ("workflow_id", workflow_id))
            if value is not None
        )
        return f"{text} [{ids}]" if ids else text


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """The process's root handler: JSON unless the stream is a terminal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if not stream.isatty() else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
