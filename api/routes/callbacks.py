from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from temporalio.service import RPCError

from api.callbacks import authenticate, failure_reason, parse_events, stats_ok, store_events
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import TemporalUnavailable, ValidationFailed
from api.schemas import DeploymentId, error_responses
from workflows.contracts import PipelineFinished, PipelineStarted
from workflows.deploy import DeployWorkflow

router = APIRouter(tags=["callbacks"], responses=error_responses(400, 401, 403, 422, 503))
MAX_BODY = 4 * 1024 * 1024


@router.post("/api/deployments/{deployment_id}/callback")
async def receive_callback(
    deployment_id: DeploymentId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    timestamp: Annotated[str | None, Header(alias="X-Provisio-Timestamp")] = None,
    signature: Annotated[str | None, Header(alias="X-Provisio-Signature")] = None,
) -> dict[str, Any]:
    """Signed events from the callback plugin: one event or `{"events": [...]}`."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValidationFailed([{"loc": ["body"], "msg": "body too large", "type": "size"}])
    deployment, verified = await authenticate(
        session, settings.secret_key, deployment_id, timestamp, signature, body
    )
    events = parse_events(body)
    stored, milestones = await store_events(session, deployment, verified, events)
    reason = None
    if milestones.stats is not None and not stats_ok(milestones.stats):
        reason = await failure_reason(session, deployment.id) or "the playbook reported failures"
    # Commit before signalling: the workflow must never record a result whose events are lost.
    await session.commit()

    handle = temporal.get_workflow_handle(deployment.workflow_id)
    try:
        if milestones.started is not None:
            await handle.signal(
                DeployWorkflow.pipeline_started, PipelineStarted(milestones.started)
            )
        if milestones.stats is not None:
            finished = PipelineFinished(ok=reason is None, stats=milestones.stats, reason=reason)
            await handle.signal(DeployWorkflow.pipeline_finished, finished)
    except RPCError as exc:
        # The plugin retries; the events are already stored once, the signals are idempotent.
        raise TemporalUnavailable(f"could not reach the workflow: {exc.message}") from None
    return {"accepted": len(events), "stored": stored}
