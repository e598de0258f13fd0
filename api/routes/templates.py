from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.audit import AuditDep
from api.deps import AdminUser, CurrentUser, SessionDep, require_roles
from api.errors import Conflict, Forbidden, NotFound, ValidationFailed
from api.schemas import TemplateCreate, TemplateId, TemplatePublic, error_responses
from db.models import Template, TemplateDiskAllocation
from domain.template_rules import template_errors
from vocabulary.audit import AuditAction
from vocabulary.configuration import masked
from vocabulary.users import Role

router = APIRouter(tags=["templates"], responses=error_responses(400, 401, 403, 404, 409))
MAX_CONFIGURATION_BYTES = 64 * 1024


@router.get("/api/templates")
async def list_templates(
    user: CurrentUser,
    session: SessionDep,
    # No control characters: PostgreSQL's text holds no NUL (a 500 from the driver otherwise).
    service_type: Annotated[
        str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")
    ] = None,
    include_inactive: bool = False,
) -> list[TemplatePublic]:
    """Active templates; admins may ask for the inactive ones too (to reactivate them)."""
    if include_inactive and user.role != Role.ADMIN:
        raise Forbidden("only admins see inactive templates")
    stmt = select(Template).order_by(Template.name, Template.version)
    if not include_inactive:
        stmt = stmt.where(Template.is_active)
    if service_type is not None:
        stmt = stmt.where(Template.service_type == service_type)
    return [TemplatePublic.model_validate(t) for t in await session.scalars(stmt)]


@router.get("/api/templates/{template_id}")
async def get_template(
    template_id: TemplateId, user: CurrentUser, session: SessionDep
) -> TemplatePublic:
    template = await session.get(Template, template_id)
    if template is None:
        raise NotFound("template not found")
    return TemplatePublic.model_validate(template)


@router.post("/api/templates", status_code=201)
async def create_template(
    body: TemplateCreate, session: SessionDep, user: AdminUser, audit: AuditDep
) -> TemplatePublic:
    """A new template, or the next version of one: templates in use are never edited in place."""
    if len(json.dumps(body.configuration)) > MAX_CONFIGURATION_BYTES:
        too_big = f"must be at most {MAX_CONFIGURATION_BYTES} bytes of JSON"
        raise ValidationFailed([{"loc": ["body", "configuration"], "msg": too_big, "type": "size"}])
    disks = [disk.model_dump() for disk in body.disk_allocations]
    if errors := template_errors(body.configuration, disks):
        raise ValidationFailed(errors)
    # Serialise versions of one name, so two admins cannot both take the same next version.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(body.name))))
    latest = await session.scalar(
        select(func.max(Template.version)).where(Template.name == body.name)
    )
    version = body.version or (latest or 0) + 1
    if (
        latest is not None
        and version <= latest
        and await session.scalar(
            select(Template.id).where(Template.name == body.name, Template.version == version)
        )
    ):
        raise Conflict(f"template {body.name!r} version {version} already exists")
    template = Template(
        name=body.name,
        service_type=body.service_type,
        version=version,
        configuration=body.configuration,
        created_by=user.id,
        disk_allocations=[TemplateDiskAllocation(**disk) for disk in disks],
    )
    session.add(template)
    await session.flush()
    await session.refresh(template, ["created_at", "is_active", "disk_allocations"])
    created = TemplatePublic.model_validate(template)
    # The defaults' secrets (declared by the overrides, or named so) masked, like a deployment's.
    orchestration = body.configuration.get("provisio")
    overrides = orchestration.get("overrides") if isinstance(orchestration, dict) else None
    entry = {**created.model_dump(), "configuration": masked(body.configuration, overrides)}
    await audit.record(AuditAction.TEMPLATE_CREATE, template.id, before=None, after=entry)
    return created


async def _set_active(
    session: SessionDep, audit: AuditDep, template_id: int, active: bool
) -> TemplatePublic:
    template = await session.get(Template, template_id, with_for_update=True)
    if template is None:
        raise NotFound("template not found")
    before = {"name": template.name, "version": template.version, "is_active": template.is_active}
    template.is_active = active
    await session.flush()
    action = AuditAction.TEMPLATE_ACTIVATE if active else AuditAction.TEMPLATE_DEACTIVATE
    await audit.record(action, template.id, before=before, after={**before, "is_active": active})
    return TemplatePublic.model_validate(template)


@router.post("/api/templates/{template_id}/deactivate", dependencies=[require_roles(Role.ADMIN)])
async def deactivate_template(
    template_id: TemplateId, session: SessionDep, audit: AuditDep
) -> TemplatePublic:
    """No new deployments from it; existing deployments keep pointing at it."""
    return await _set_active(session, audit, template_id, False)


@router.post("/api/templates/{template_id}/activate", dependencies=[require_roles(Role.ADMIN)])
async def activate_template(
    template_id: TemplateId, session: SessionDep, audit: AuditDep
) -> TemplatePublic:
    return await _set_active(session, audit, template_id, True)
