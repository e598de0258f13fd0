"""The web UI: one HTML shell and its static modules, served from api/static on the API's origin.

The shell carries no data: every page is rendered in the browser from the same HTTP API, with the
same bearer token, as any other client (see docs/ui.md). The paths below are the UI's addresses,
so a reload or a shared link lands on the right page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGES = (
    "/login",
    "/deployments",
    "/deployments/new",
    "/deployments/{deployment_id:int}",
    "/templates",
    "/templates/{template_id:int}",
    "/admin/users",
    "/admin/templates",
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

_assets = StaticFiles(directory=STATIC_DIR)


def _shell() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/deployments", status_code=307)


for _path in PAGES:
    router.add_api_route(_path, _shell, methods=["GET"])


@router.get("/ui/{path:path}")
async def asset(path: str, request: Request) -> Response:
    """The shell's modules, styles and icon. `no-cache` means "revalidate": a new release is
    picked up at the next load, an unchanged file costs a 304."""
    response = await _assets.get_response(path, request.scope)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
