"""Approvals over HTTP: what waits for a decision, and an admin's approve or reject."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder

from api.approvals import decide, waiting_for_approval
from api.audit import AuditDep, deployment_snapshot, request_key
from api.deps import CurrentUser, SessionDep, SettingsDep, TemporalDep, require_roles
from api.routes.deployments import IdempotencyKey, _with_link
from api.schemas import ApprovalDecision, DeploymentDetail, DeploymentId, error_responses
from vocabulary.approvals import ApprovalState
from vocabulary.audit import AuditAction
from vocabulary.users import Role

router = APIRouter(tags=["approvals"], responses=error_responses(400, 401, 403, 404, 409))
ADMINS = [require_roles(Role.ADMIN)]


@router.get("/api/approvals", dependencies=ADMINS)
async def list_waiting(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> list[DeploymentDetail]:
    """Deployments awaiting approval, oldest first, each with its plan (null while it is made)."""
    rows = await waiting_for_approval(session, user)
    return [_with_link(row, settings) for row in rows]


AUDIT_ACTIONS = {
    ApprovalState.APPROVED: AuditAction.DEPLOYMENT_APPROVE,
    ApprovalState.REJECTED: AuditAction.DEPLOYMENT_REJECT,
}


def _snapshot(detail: dict[str, Any]) -> dict[str, Any]:
    return jsonable_encoder({**deployment_snapshot(detail), "approval": detail["approval"]})


async def _decide(
    decision: ApprovalState,
    deployment_id: int,
    body: ApprovalDecision,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: str | None,
) -> DeploymentDetail:
    before, after = await decide(
        session, temporal, user, deployment_id, decision, body.comment, idempotency_key
    )
    action = AUDIT_ACTIONS[decision]
    await audit.record(
        action,
        deployment_id,
        before=_snapshot(before),
        after=_snapshot(after),
        key=request_key(action, deployment_id, user, idempotency_key),
    )
    return _with_link(after, settings)


@router.post(
    "/api/deployments/{deployment_id}/approve",
    status_code=202,
    dependencies=ADMINS,
    responses=error_responses(503),
)
async def approve(
    deployment_id: DeploymentId,
    body: ApprovalDecision,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> DeploymentDetail:
    """Build the deployment as its plan says (an admin other than the requester)."""
    return await _decide(
        ApprovalState.APPROVED, deployment_id, body, user, session, temporal, settings, audit,
        idempotency_key,
    )  # fmt: skip


@router.post(
    "/api/deployments/{deployment_id}/reject",
    status_code=202,
    dependencies=ADMINS,
    responses=error_responses(503),
)
async def reject(
    deployment_id: DeploymentId,
    body: ApprovalDecision,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> DeploymentDetail:
    """Reject it: it ends `rejected` with nothing built (an admin other than the requester)."""
    return await _decide(
        ApprovalState.REJECTED, deployment_id, body, user, session, temporal, settings, audit,
        idempotency_key,
    )  # fmt: skip
