"""The callback plugin's endpoint: `POST /api/deployments/{id}/callback` (the ingestion is
`api/callback_ingest.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from temporalio.service import RPCError

from api.callback_ingest import authenticate, failure_reason, parse_events, store_events
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import TemporalUnavailable
from api.numbers import INT_MAX, AsciiDigits
from api.schemas import DeploymentId, error_responses
from vocabulary.callback_events import stats_ok
from vocabulary.contracts import PipelineFinished, PipelineStarted
from workflows.deploy import DeployWorkflow

# The body's size is capped by BodyLimitMiddleware (413) while it streams in.
router = APIRouter(tags=["callbacks"], responses=error_responses(400, 401, 403, 413, 422, 503))


@router.post("/api/deployments/{deployment_id}/callback")
async def receive_callback(
    deployment_id: DeploymentId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    timestamp: Annotated[str | None, Header(alias="X-Provisio-Timestamp")] = None,
    signature: Annotated[str | None, Header(alias="X-Provisio-Signature")] = None,
    run: Annotated[int, Query(ge=1, le=INT_MAX), AsciiDigits] = 1,
) -> dict[str, Any]:
    """Signed events from the callback plugin: one event or `{"events": [...]}`, for the
    deployment's pipeline run `run` (its callback URL names it; its token signs only it)."""
    body = await request.body()
    target, verified = await authenticate(
        session, settings.callback_secret, deployment_id, run, timestamp, signature, body
    )
    events = parse_events(body)
    stored, milestones = await store_events(session, target, run, verified, events)
    reason = None
    if milestones.stats is not None and not stats_ok(milestones.stats):
        reason = await failure_reason(session, target.id, run) or "the playbook reported failures"
    # Commit before signalling: the workflow must never record a result whose events are lost.
    await session.commit()

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
    return {"accepted": len(events), "stored": stored}
