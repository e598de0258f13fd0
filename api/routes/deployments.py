from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from api.audit import (
    AuditDep,
    asked_change,
    deployment_snapshot,
    masked_configuration,
    request_key,
)
from api.changes import change_deployment as send_change
from api.cursors import decode_cursor, encode_cursor
from api.deps import (
    CallerId,
    CurrentUser,
    SessionDep,
    SettingsDep,
    TemporalDep,
    oauth2_scheme,
    read_connection,
    require_roles,
    token_user_id,
)
from api.errors import NotAuthenticated, NotFound, ValidationFailed
from api.launch import launch_deployment
from api.leases import extend_lease
from api.numbers import BIGINT_MAX, AsciiDigits
from api.operations import operate
from api.read_views import detail_json, history_json, json_response, page_json, with_links
from api.schemas import (
    INT_MAX,
    DeploymentChange,
    DeploymentCreate,
    DeploymentDetail,
    DeploymentId,
    DeploymentPage,
    HistoryEntry,
    LeaseExtension,
    error_responses,
)
from db.deployment_reads import (
    HISTORY_PAGE_ROWS,
    caller_active,
    deployment_detail,
    detail_for_caller,
    history_for_caller,
    page_for_caller,
)
from db.models import User
from settings import Settings
from vocabulary.audit import AuditAction
from vocabulary.leases import MAX_LEASE_S
from vocabulary.operations import Operation
from vocabulary.statuses import DeploymentStatus
from vocabulary.users import Role

router = APIRouter(tags=["deployments"], responses=error_responses(400, 401, 403, 404, 409))
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$")
]
StatusFilter = Annotated[DeploymentStatus | None, Query()]
# The most rows one history page may ask for.
HISTORY_MAX_ROWS = 1000


def _with_link(row: dict[str, Any], settings: Settings) -> DeploymentDetail:
    return DeploymentDetail.model_validate(with_links(row, settings))


class ReadRoute(APIRoute):
    """A read view's route: the view checks its caller in its own statement, which runs only
    once FastAPI has validated the parameters. A caller the API would not let in must still get
    401 before any 422, as on every route (CurrentUser is resolved before the parameters are
    validated): before a 422, the caller alone is checked."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_read(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError:
                await _check_caller(request)
                raise

        return handle_read


async def _check_caller(request: Request) -> None:
    """401 unless the request's token names a user who exists and is active."""
    token = await oauth2_scheme(request)
    caller_id = token_user_id(token, request.app.state.settings.secret_key)
    if caller_id is not None:
        async with read_connection(request) as conn:
            if await caller_active(conn, caller_id):
                return
    raise NotAuthenticated("Not authenticated")


def _read(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """GET `path` as a read view: the response model documents the answer, which the view
    serialises itself (api/read_views.py) and returns as a Response."""

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(
            path, endpoint, methods=["GET"], route_class_override=ReadRoute, **kwargs
        )
        return endpoint

    return register


@router.post(
    "/api/deployments",
    status_code=201,
    dependencies=[require_roles(Role.ADMIN, Role.OPERATOR)],
)
async def create_deployment(
    body: DeploymentCreate,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> DeploymentDetail:
    row = await launch_deployment(session, temporal, settings, user, body, idempotency_key)
    # A new deployment's answer is built from what was asked, values in clear: shown masked,
    # like every other read of it.
    row["configuration"] = await masked_configuration(
        session, row["template_id"], row["configuration"]
    )
    # Keyed by its workflow: a launch answered again (the same Idempotency-Key) is one entry.
    await audit.record(
        AuditAction.DEPLOYMENT_LAUNCH,
        row["id"],
        before=None,
        after=deployment_snapshot(row),
        key=f"{AuditAction.DEPLOYMENT_LAUNCH.value}:{row['workflow_id']}",
    )
    return _with_link(row, settings)


@_read("/api/deployments", response_model=DeploymentPage)
async def get_deployments(
    request: Request,
    caller_id: CallerId,
    status: StatusFilter = None,
    template_id: Annotated[int | None, Query(ge=1, le=INT_MAX), AsciiDigits] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100), AsciiDigits] = 20,
    expiring_within_s: Annotated[
        int | None,
        Query(ge=0, le=MAX_LEASE_S, description="only leases ending within this many seconds"),
        AsciiDigits,
    ] = None,
) -> Response:
    # A bad cursor is a 422 too: only for a caller the API lets in.
    try:
        before_id = None if cursor is None else decode_cursor(cursor)
    except ValidationFailed:
        await _check_caller(request)
        raise
    async with read_connection(request) as conn:
        read = await page_for_caller(
            conn,
            caller_id,
            status=status,
            template_id=template_id,
            before_id=before_id,
            limit=limit,
            expiring_within_s=expiring_within_s,
        )
    if not read.caller:
        raise NotAuthenticated("Not authenticated")
    assert read.value is not None
    rows, next_before = read.value
    next_cursor = None if next_before is None else encode_cursor(next_before)
    return json_response(page_json(rows, next_cursor))


@_read("/api/deployments/{deployment_id:int}", response_model=DeploymentDetail)
async def get_deployment(
    deployment_id: DeploymentId, request: Request, caller_id: CallerId
) -> Response:
    async with read_connection(request) as conn:
        read = await detail_for_caller(conn, caller_id, deployment_id)
    if not read.caller:
        raise NotAuthenticated("Not authenticated")
    if read.value is None:
        raise NotFound("deployment not found")
    return json_response(detail_json(read.value, request.app.state.settings))


OPERATORS = [require_roles(Role.ADMIN, Role.OPERATOR)]
OPERATION_DOCS = {
    Operation.CANCEL: "Stop a deployment still being provisioned and tear down what it built: "
    "`cancelling`, then `cancelled`.",
    Operation.DESTROY: "Tear down a settled deployment: `destroying`, then `destroyed`.",
    Operation.RETRY: "Run the pipeline again for a failed or timed-out deployment (attempt + 1).",
}
OPERATION_ACTIONS = {
    Operation.CANCEL: AuditAction.DEPLOYMENT_CANCEL,
    Operation.DESTROY: AuditAction.DEPLOYMENT_DESTROY,
    Operation.RETRY: AuditAction.DEPLOYMENT_RETRY,
}


async def _snapshot(session: AsyncSession, user: User, deployment_id: int) -> dict[str, Any] | None:
    """The deployment before an operation, for its audit entry (None: the operation's own
    read answers 404)."""
    row = await deployment_detail(session, user, deployment_id)
    return None if row is None else deployment_snapshot(row)


def _operation_endpoint(operation: Operation) -> Callable[..., Awaitable[DeploymentDetail]]:
    async def endpoint(
        deployment_id: DeploymentId,
        user: CurrentUser,
        session: SessionDep,
        temporal: TemporalDep,
        settings: SettingsDep,
        audit: AuditDep,
        idempotency_key: IdempotencyKey = None,
    ) -> DeploymentDetail:
        before = await _snapshot(session, user, deployment_id)
        row = await operate(session, temporal, user, deployment_id, operation, idempotency_key)
        action = OPERATION_ACTIONS[operation]
        await audit.record(
            action,
            deployment_id,
            before=before,
            after=deployment_snapshot(row),
            key=request_key(action, deployment_id, user, idempotency_key),
        )
        return _with_link(row, settings)

    endpoint.__doc__ = OPERATION_DOCS[operation]
    return endpoint


# POST /api/deployments/{id}/cancel, /destroy, /retry: one route per operation of the vocabulary.
for _operation in Operation:
    router.add_api_route(
        f"/api/deployments/{{deployment_id}}/{_operation.value}",
        _operation_endpoint(_operation),
        methods=["POST"],
        status_code=202,
        dependencies=OPERATORS,
        name=f"{_operation.value}_deployment",
        response_model=DeploymentDetail,
    )


@router.post("/api/deployments/{deployment_id}/lease", dependencies=OPERATORS)
async def extend_deployment_lease(
    deployment_id: DeploymentId,
    body: LeaseExtension,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> DeploymentDetail:
    """Extend the deployment's lease: `extend_s` after its current expiry, or a new
    `expires_at`; never past the template's `max_lease_s` from now (422)."""
    before = await _snapshot(session, user, deployment_id)
    row = await extend_lease(session, temporal, user, deployment_id, body, idempotency_key)
    action = AuditAction.DEPLOYMENT_LEASE
    await audit.record(
        action,
        deployment_id,
        before=before,
        after=deployment_snapshot(row),
        key=request_key(action, deployment_id, user, idempotency_key),
    )
    return _with_link(row, settings)


@router.patch(
    "/api/deployments/{deployment_id:int}",
    status_code=202,
    dependencies=OPERATORS,
    responses=error_responses(422, 503),
)
async def change_deployment(
    deployment_id: DeploymentId,
    body: DeploymentChange,
    user: CurrentUser,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: IdempotencyKey = None,
) -> DeploymentDetail:
    """Change a succeeded deployment: grow its disks (`disk_allocations`: `mount_point`,
    `size_gb`) and/or set configuration values (`configuration`), in one run: `updating`, then
    `succeeded` with the new sizes and values or `failed` with the reason. A shrink, a size
    outside its disk's bounds, a total past the template's cap, a value its template's overrides
    do not allow or a change that changes nothing is a 422."""
    before = await _snapshot(session, user, deployment_id)
    row = await send_change(session, temporal, settings, user, deployment_id, body, idempotency_key)
    # The detail still shows the old sizes and values until the run succeeds: the entry's
    # `after` is what was asked, with the status the change moved to.
    assert before is not None  # the change's own read would have answered 404
    disks = [(disk.mount_point, disk.size_gb) for disk in body.disk_allocations]
    asked = await asked_change(session, before, row["template_id"], disks, body.configuration)
    action = AuditAction.DEPLOYMENT_CHANGE
    await audit.record(
        action,
        deployment_id,
        before=before,
        after={**deployment_snapshot(row), **asked},
        key=request_key(action, deployment_id, user, idempotency_key),
    )
    return _with_link(row, settings)


class HistoryPageQuery(BaseModel):
    """The history page's query. Unknown parameters are refused: `?limt=5` would otherwise
    quietly answer a page of 500."""

    model_config = ConfigDict(extra="forbid")

    after: Annotated[
        int, Field(ge=0, le=BIGINT_MAX, description="history id to start after"), AsciiDigits
    ] = 0
    limit: Annotated[
        int, Field(ge=1, le=HISTORY_MAX_ROWS, description="rows per page"), AsciiDigits
    ] = HISTORY_PAGE_ROWS


@_read(
    "/api/deployments/{deployment_id}/history",
    response_model=list[HistoryEntry],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": 'The next page, while there is one: `<…>; rel="next"`',
                    "schema": {"type": "string"},
                }
            }
        }
    },
)
async def get_history(
    deployment_id: DeploymentId,
    request: Request,
    caller_id: CallerId,
    query: Annotated[HistoryPageQuery, Query()],
) -> Response:
    """A page of the deployment's history, oldest first: the rows after `after`. When more rows
    follow, the `Link` header names the next page (`rel="next"`)."""
    async with read_connection(request) as conn:
        read = await history_for_caller(
            conn, caller_id, deployment_id, after=query.after, limit=query.limit
        )
    if not read.caller:
        raise NotAuthenticated("Not authenticated")
    page = read.value
    if page is None:
        raise NotFound("deployment not found")
    response = json_response(history_json(page.rows))
    if page.more:
        # A path-absolute reference: right behind any proxy, whatever scheme and host it serves.
        next_query = urlencode({"after": page.rows[-1]["id"], "limit": query.limit})
        response.headers["Link"] = (
            f'</api/deployments/{deployment_id}/history?{next_query}>; rel="next"'
        )
    return response
