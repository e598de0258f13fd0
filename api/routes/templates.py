from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep
from api.errors import NotFound
from api.schemas import TemplatePublic
from db.models import Template

router = APIRouter(tags=["templates"])


@router.get("/api/templates")
async def list_templates(user: CurrentUser, session: SessionDep) -> list[TemplatePublic]:
    templates = await session.scalars(
        select(Template).where(Template.is_active).order_by(Template.name, Template.version)
    )
    return [TemplatePublic.model_validate(t) for t in templates]


@router.get("/api/templates/{template_id}")
async def get_template(template_id: int, user: CurrentUser, session: SessionDep) -> TemplatePublic:
    template = await session.get(Template, template_id)
    if template is None:
        raise NotFound("template not found")
    return TemplatePublic.model_validate(template)
