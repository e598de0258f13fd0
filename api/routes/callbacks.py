"""The callback plugin's endpoint: `POST /api/deployments/{id}/callback` (the ingestion is
`api/callback_ingest.py`)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from temporalio.client import Client
from temporalio.service import RPCError

from api.callback_ingest import (
    Milestones,
    authenticate,
    callback_connection,
    failure_reason,
    parse_events,
    store_events,
)
from api.deps import SettingsDep, TemporalDep
from api.errors import DomainError, TemporalUnavailable
from api.numbers import INT_MAX, AsciiDigits
from api.schemas import DeploymentId, error_responses
from db.callback_store import CallbackTarget
from telemetry.api_metrics import (
    CALLBACK_EVENTS_RECEIVED,
    CALLBACK_EVENTS_STORED,
    CALLBACK_REJECTED,
    observe_callback_lag,
)
from telemetry.logs import set_deployment_context
from telemetry.tracing import continued_span
from vocabulary.callback_events import stats_ok
from vocabulary.contracts import PipelineFinished, PipelineStarted
from workflows.deploy import DeployWorkflow

# The body's size is capped by BodyLimitMiddleware (413) while it streams in.
router = APIRouter(tags=["callbacks"], responses=error_responses(400, 401, 403, 413, 422, 503))


@router.post("/api/deployments/{deployment_id}/callback")
async def receive_callback(
    deployment_id: DeploymentId,
    request: Request,
    settings: SettingsDep,
    temporal: TemporalDep,
    timestamp: Annotated[str | None, Header(alias="X-Provisio-Timestamp")] = None,
    signature: Annotated[str | None, Header(alias="X-Provisio-Signature")] = None,
    run: Annotated[int, Query(ge=1, le=INT_MAX), AsciiDigits] = 1,
) -> dict[str, Any]:
    """Signed events from the callback plugin: one event or `{"events": [...]}`, for the
    deployment's pipeline run `run` (its callback URL names it; its token signs only it)."""
    body = await request.body()
    engine = request.app.state.engine
    try:
        with ExitStack() as tracing:
            async with callback_connection(engine) as connection:
                target, verified = await authenticate(
                    connection,
                    settings.callback_secret,
                    deployment_id,
                    run,
                    timestamp,
                    signature,
                    body,
                )
                set_deployment_context(target.id, target.workflow_id)
                events = parse_events(body)
                # Signed, so the trace context its URL carries (telemetry/tracing.py) is the run's
                # own; the span covers the storing and the signals.
                tracing.enter_context(
                    continued_span(request.app.state.tracer, "callback", request.query_params)
                )
                # One statement, committed once it answers: the workflow never hears of a result
                # whose events are lost.
                stored, milestones = await store_events(connection, target, run, verified, events)
                reason = None
                if milestones.stats is not None and not stats_ok(milestones.stats):
                    reason = await failure_reason(connection, target.id, run)
                    reason = reason or "the playbook reported failures"
            # The connection is back in the pool before Temporal is called.
            await _signal(temporal, target, run, milestones, reason)
    except DomainError as exc:
        CALLBACK_REJECTED.labels(exc.status_code).inc()
        raise
    CALLBACK_EVENTS_RECEIVED.inc(len(events))
    if stored:
        CALLBACK_EVENTS_STORED.inc(stored)
        observe_callback_lag(events)
    return {"accepted": len(events), "stored": stored}


async def _signal(
    temporal: Client, target: CallbackTarget, run: int, milestones: Milestones, reason: str | None
) -> None:
    """The milestones the stored batch carries, to the deployment's workflow."""
    if milestones.started is None and milestones.stats is None:
        return
    handle = temporal.get_workflow_handle(target.workflow_id)
    try:
        if milestones.started is not None:
            await handle.signal(
                DeployWorkflow.pipeline_started, PipelineStarted(milestones.started, run=run)
            )
        if milestones.stats is not None:
            finished = PipelineFinished(
                ok=reason is None, stats=milestones.stats, reason=reason, run=run
            )
            await handle.signal(DeployWorkflow.pipeline_finished, finished)
    except RPCError as exc:
        # The plugin retries; the events are already stored once, the signals are idempotent.
        raise TemporalUnavailable(f"could not reach the workflow: {exc.message}") from None
