"""GET /api/audit: the audit trail, for admins only (db/audit.py says what an entry holds)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from api.cursors import decode_cursor, encode_cursor
from api.deps import SessionDep, require_roles
from api.numbers import BIGINT_MAX, INT_MAX, AsciiDigits
from api.schemas import error_responses
from db.audit import AuditFilters, audit_page
from vocabulary.audit import AuditAction, AuditTarget
from vocabulary.users import Role

router = APIRouter(tags=["audit"], responses=error_responses(400, 401, 403))
# The most entries one page may ask for.
AUDIT_MAX_ROWS = 200


class AuditActor(BaseModel):
    id: int
    username: str
    role: str


class AuditTargetRef(BaseModel):
    type: AuditTarget
    id: int


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: AuditActor = Field(description="who acted: their id, username and role at the time")
    address: str = Field(description="the client's address (trusted proxies honoured)")
    action: AuditAction
    target: AuditTargetRef
    before: Any = Field(description="the target before (null for a creation)")
    after: Any = Field(description="the target after (what a change asked for)")


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    next_cursor: str | None


def _iso_only(value: Any) -> Any:
    # pydantic reads `0.5` or `1700000000` as seconds since 1970: a time here is ISO 8601.
    if isinstance(value, str) and not ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date and time with a zone")
    return value


ISO_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]")
IsoDatetime = BeforeValidator(_iso_only)


class AuditQuery(BaseModel):
    """The audit page's query. Unknown parameters are refused, like the history's."""

    model_config = ConfigDict(extra="forbid")

    actor_id: Annotated[
        int | None, Field(ge=1, le=INT_MAX, description="the acting user's id"), AsciiDigits
    ] = None
    actor: Annotated[
        str | None,
        # No control characters: PostgreSQL's text holds no NUL, and no username has one.
        Field(max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$", description="the acting username"),
    ] = None
    action: AuditAction | None = None
    target_type: AuditTarget | None = None
    target_id: Annotated[
        int | None, Field(ge=1, le=BIGINT_MAX, description="with target_type"), AsciiDigits
    ] = None
    since: Annotated[
        AwareDatetime | None, Field(description="entries at or after"), IsoDatetime
    ] = None
    until: Annotated[AwareDatetime | None, Field(description="entries before"), IsoDatetime] = None
    cursor: Annotated[str | None, Field(max_length=64)] = None
    limit: Annotated[
        int, Field(ge=1, le=AUDIT_MAX_ROWS, description="entries per page"), AsciiDigits
    ] = 50

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # 9999-12-31T23:59-05:00 is past what Python (and so the driver) holds in UTC.
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None


@router.get(
    "/api/audit",
    dependencies=[require_roles(Role.ADMIN)],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": 'The next page, while there is one: `<…>; rel="next"`',
                    "schema": {"type": "string"},
                }
            }
        },
        **error_responses(422),
    },
)
async def get_audit(
    request: Request,
    session: SessionDep,
    response: Response,
    query: Annotated[AuditQuery, Query()],
) -> AuditPage:
    """The audit trail, newest first: every admin action and every operation on a deployment,
    with who (id, username, role), from which address, and the target before → after. Filters
    combine; `cursor` is the previous page's `next_cursor` (also in `Link: rel="next"`)."""
    filters = AuditFilters(
        actor_id=query.actor_id,
        actor_username=query.actor,
        action=query.action,
        target_type=query.target_type,
        target_id=query.target_id,
        since=query.since,
        until=query.until,
    )
    before_id = None if query.cursor is None else decode_cursor(query.cursor)
    rows, next_before = await audit_page(session, filters, before_id=before_id, limit=query.limit)
    next_cursor = None if next_before is None else encode_cursor(next_before)
    if next_cursor is not None:
        asked = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        next_query = urlencode([*asked, ("cursor", next_cursor)])
        response.headers["Link"] = f'</api/audit?{next_query}>; rel="next"'
    return AuditPage.model_validate({"items": rows, "next_cursor": next_cursor})
