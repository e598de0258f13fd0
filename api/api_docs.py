"""Swagger UI at /docs, only when `PROVISIO_API_DOCS` is on (the embedded dev stack's default).

FastAPI's own page loads Swagger UI from a CDN with no integrity hash and runs an inline script, on
the origin where the web UI keeps its bearer token: whoever serves that file could read the token.
Here the files come from an installed package (`fastapi-offline` ships the Swagger UI bundle), the
start-up script is a file of ours too, and the page carries a CSP that lets it load nothing from
anywhere else and run no inline script.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.errors import NotFound

DOCS_URL = "/docs"
ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
# The only files served from ASSETS: a name outside this set is a 404, never a path.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}

# Swagger UI draws some of its widgets with style attributes, hence 'unsafe-inline' for styles
# only; scripts come from this origin alone, and the page may talk only to this origin.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{docs}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{docs}/assets/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""

# A file, not an inline script, so that the CSP needs no 'unsafe-inline' for scripts.
INIT_SCRIPT = """window.ui = SwaggerUIBundle({
  url: %r,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""


def install_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI for `app` at /docs from local files, under a strict CSP."""
    page = PAGE.format(title=app.title, docs=DOCS_URL)
    init = INIT_SCRIPT % (app.openapi_url or "/openapi.json")

    @app.get(DOCS_URL, include_in_schema=False)
    async def api_docs_page() -> HTMLResponse:
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    @app.get(f"{DOCS_URL}/init.js", include_in_schema=False)
    async def api_docs_init() -> Response:
        return Response(init, media_type="text/javascript", headers=SECURITY_HEADERS)

    @app.get(DOCS_URL + "/assets/{name}", include_in_schema=False)
    async def api_docs_asset(name: str) -> FileResponse:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            raise NotFound("Not Found")
        return FileResponse(ASSETS / name, media_type=media_type, headers=SECURITY_HEADERS)
