"""Plans on demand: what a launch or a change would do, checked as it would be and shown
before anything starts (`POST /api/deployments/plan`, `POST /api/deployments/{id}/plan`).

These plans are read from the template and the deployment, not from the hosts: the check-mode
run on the hosts is the approval's plan (workflows/deploy.py), which a launch of a template
that requires approval makes before anyone decides. Nothing is written and nothing is reserved.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.changes import checked_change
from api.errors import Conflict, ValidationFailed
from api.launch import _ask
from api.schemas import DeploymentChange, DeploymentCreate
from db.models import User
from db.repository import deployment_name_taken, load_template_snapshot
from domain.validation import DeploymentValidationError, validate_deployment
from settings import Settings
from vocabulary.approvals import make_plan
from vocabulary.configuration import configuration_changes, declared_secrets
from vocabulary.operations import change_refusal
from vocabulary.statuses import DeploymentStatus


async def plan_launch(session: AsyncSession, user: User, body: DeploymentCreate) -> dict[str, Any]:
    """The launch's plan: its template version, each disk, each value (secrets masked), and
    what follows (an approval, a lease); the launch's own 422s and 409."""
    template = await load_template_snapshot(session, body.template_id)
    try:
        deployment = validate_deployment(template, _ask(body))
    except DeploymentValidationError as exc:
        raise ValidationFailed(exc.errors) from None
    if await deployment_name_taken(session, user.id, body.deployment_name):
        raise Conflict(f"a deployment named {body.deployment_name!r} already exists")
    plan = make_plan(
        deployment.disks,
        deployment.configuration,
        deployment.secret_keys,
        [],
        {
            "id": deployment.template_id,
            "name": deployment.template_name,
            "version": deployment.template_version,
        },
    )
    del plan["hosts"]  # known to the hosts' own check-mode run only
    return {
        **plan,
        "deployment_name": body.deployment_name,
        "requires_approval": deployment.requires_approval,
        "lease_s": deployment.lease_s,
    }


async def plan_change(
    session: AsyncSession,
    settings: Settings,
    user: User,
    deployment_id: int,
    body: DeploymentChange,
) -> dict[str, Any]:
    """The change's plan: each disk that grows (old → new GB) and each value that changes
    (old → new, secrets masked); the PATCH's own 404, 409 and 422s."""
    row, asked = await checked_change(session, settings, user, deployment_id, body)
    status = DeploymentStatus(row["status"])
    refusal = change_refusal(status)
    template = await load_template_snapshot(session, row["template_id"])
    overrides = ((template.configuration if template else {}).get("provisio") or {}).get(
        "overrides"
    )
    sizes = {disk["mount_point"]: disk["size_gb"] for disk in row["disk_allocations"]}
    disks = [
        {"mount_point": ask.mount_point, "old_gb": sizes[ask.mount_point], "new_gb": ask.size_gb}
        for ask in asked
        if sizes[ask.mount_point] != ask.size_gb
    ]
    # The API's own view of the values is masked: a secret shows as changing either way.
    values = configuration_changes(
        row["configuration"], dict(body.configuration), declared_secrets(overrides)
    )
    if refusal is None and not disks and not values:
        refusal = "nothing to change: every size and value asked is the deployment's now"
    return {
        "deployment_id": deployment_id,
        "status": status.value,
        # A plan is shown whatever the status; applying it waits for `succeeded`.
        "applicable": refusal is None,
        "refusal": refusal,
        "disks": disks,
        "configuration": values,
    }
