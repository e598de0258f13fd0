"""The UI's pages and assets are served from the app's own origin, with a strict CSP."""

from __future__ import annotations

import httpx

from api.routes.ui import PAGES


async def test_pages_are_the_shell_with_a_strict_content_security_policy(
    api: httpx.AsyncClient,
) -> None:
    root = await api.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/deployments"
    for path in [
        p.replace("{deployment_id:int}", "7").replace("{template_id:int}", "3") for p in PAGES
    ]:
        page = await api.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/ui/app.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
    # Only numeric ids are pages; the API keeps its own paths.
    assert (await api.get("/deployments/abc")).status_code == 404
    assert (await api.get("/api/deployments")).status_code == 401


async def test_assets_are_served_and_revalidated_and_nothing_else_is(
    api: httpx.AsyncClient,
) -> None:
    script = await api.get("/ui/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    again = await api.get("/ui/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert (await api.get("/ui/app.css")).headers["content-type"].startswith("text/css")
    assert (await api.get("/ui/missing.js")).status_code == 404
    assert (await api.get("/ui/../routes/ui.py")).status_code == 404
    assert (await api.get("/ui/%2e%2e/routes/ui.py")).status_code == 404
