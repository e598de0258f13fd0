"""Plans on demand over HTTP: what a launch or a change would do, before anything starts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SettingsDep, require_roles
from api.plans import plan_change, plan_launch
from api.schemas import DeploymentChange, DeploymentCreate, DeploymentId, error_responses
from vocabulary.users import Role

router = APIRouter(tags=["plans"], responses=error_responses(400, 401, 403, 404, 409, 422))
OPERATORS = [require_roles(Role.ADMIN, Role.OPERATOR)]


@router.post("/api/deployments/plan", dependencies=OPERATORS)
async def plan_a_launch(
    body: DeploymentCreate, user: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    """What `POST /api/deployments` with this body would build: the template version, each
    disk, each value (secrets masked), whether it waits for approval and its lease. Checked as
    the launch is (its 422s and 409); nothing is written."""
    return await plan_launch(session, user, body)


@router.post("/api/deployments/{deployment_id}/plan", dependencies=OPERATORS)
async def plan_a_change(
    deployment_id: DeploymentId,
    body: DeploymentChange,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """What `PATCH /api/deployments/{id}` with this body would change: each disk old → new GB,
    each value old → new (secrets masked), and whether the deployment's status lets it apply
    now. Checked as the PATCH is (its 404, 409 and 422s); nothing is sent."""
    return await plan_change(session, settings, user, deployment_id, body)
