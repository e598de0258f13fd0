"""The web UI: one HTML shell and its static modules from the top-level `web/` folder, on the API's
origin, plus `/ui/vocabulary.js`, the words the UI shares with the API, written from `vocabulary/`.

The shell carries no data: every page is rendered in the browser from the same HTTP API, with the
same bearer token, as any other client (see docs/ui.md). The paths below are the UI's addresses,
so a reload or a shared link lands on the right page.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from settings import PROJECT_ROOT
from vocabulary import callback_events
from vocabulary.audit import AUDIT_ACTIONS, AUDIT_TARGETS
from vocabulary.configuration import MASK, SECRET_KEY
from vocabulary.disks import DiskState
from vocabulary.operations import STARTS_AS, Operation
from vocabulary.statuses import (
    HISTORY_STATUSES,
    DeploymentStatus,
    HistoryStatus,
)

router = APIRouter(include_in_schema=False)

WEB_DIR = PROJECT_ROOT / "web"
PAGES = (
    "/login",
    "/deployments",
    "/deployments/new",
    "/deployments/{deployment_id:int}",
    "/templates",
    "/templates/{template_id:int}",
    "/account",
    "/admin/users",
    "/admin/templates",
    "/admin/audit",
    "/admin/approvals",
)
# No inline script or style, nothing from another origin: the token the UI keeps in storage is
# only as safe as the page is free of injected script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# `no-cache` means "revalidate": a new release is picked up at the next load, an unchanged file
# costs a 304.
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

_assets = StaticFiles(directory=WEB_DIR)


def _shell() -> Response:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@cache
def vocabulary_module() -> str:
    """An ES module of the statuses, operations, disk states and callback words, so the UI never
    retypes them. Which operations a deployment allows now is not here: the API's detail says
    (`allowed_operations`)."""
    words = {
        "STATUS": {status.name: status.value for status in DeploymentStatus},
        "HISTORY_STATUS": {status.name: status.value for status in HistoryStatus},
        "STATUSES": [status.value for status in DeploymentStatus],
        "FINAL_STATUSES": [status.value for status in DeploymentStatus if status.is_final],
        "SETTLED_STATUSES": [status.value for status in DeploymentStatus if status.is_settled],
        "TERMINAL_STATUSES": [status.value for status in DeploymentStatus if status.is_terminal],
        "OPERATION": {operation.name: operation.value for operation in Operation},
        "OPERATIONS": [operation.value for operation in Operation],
        # The status an operation moves a deployment to when it starts (cancel → cancelling).
        "OPERATION_STARTS_AS": {
            operation.value: STARTS_AS[operation].value for operation in Operation
        },
        "DISK_STATE": {state.name: state.value for state in DiskState},
        "HISTORY_STATUSES": list(HISTORY_STATUSES),
        "EVENT": {name.upper(): name for name in callback_events.EVENT_NAMES},
        "RESULT_OUTCOMES": callback_events.RESULT_OUTCOMES,
        "FAILING_EVENTS": list(callback_events.FAILING_EVENTS),
        "HOST_STATS_KEYS": list(callback_events.HOST_STATS_KEYS),
        # A configuration key that names a secret (the form never shows its value), and how
        # history shows one.
        "SECRET_KEY_PATTERN": SECRET_KEY.pattern,
        "MASK": MASK,
        # The audit trail's actions and target kinds (its page's filters).
        "AUDIT_ACTIONS": list(AUDIT_ACTIONS),
        "AUDIT_TARGETS": list(AUDIT_TARGETS),
    }
    lines = [
        f"export const {name} = Object.freeze({json.dumps(value)});"
        for name, value in words.items()
    ]
    return (
        "// Written by the API from the vocabulary package (api/routes/ui.py).\n"
        + "\n".join(lines)
        + "\n"
    )


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/deployments", status_code=307)


for _path in PAGES:
    router.add_api_route(_path, _shell, methods=["GET"])


@router.get("/ui/vocabulary.js")
async def vocabulary_js(request: Request) -> Response:
    source = vocabulary_module()
    etag = f'"{hashlib.sha256(source.encode()).hexdigest()[:32]}"'
    headers = {**ASSET_HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(source, media_type="text/javascript", headers=headers)


@router.get("/ui/{path:path}")
async def asset(path: str, request: Request) -> Response:
    """The shell's modules, styles and icon."""
    response = await _assets.get_response(path, request.scope)
    response.headers.update(ASSET_HEADERS)
    return response
