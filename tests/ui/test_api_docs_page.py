"""/docs (when turned on) in headless Chromium: Swagger UI works under its CSP, and the page asks
no other origin for anything."""

from __future__ import annotations

from typing import Any

import pytest

from settings import Settings

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import expect  # noqa: E402


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The served API with its docs on, as the embedded dev stack runs it."""
    return settings.model_copy(update={"api_docs": True})


async def test_swagger_ui_runs_under_its_csp_from_this_origin_only(
    new_page: Any, live_api: str
) -> None:
    page = await new_page()
    requests: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )

    await page.goto("/docs")
    # Rendered from the API's own document: the title and an operation of it.
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Provisio")
    await expect(page.get_by_text("/api/health").first).to_be_visible()

    assert requests and all(url.startswith(live_api + "/") for url in requests), requests
    # The CSP let everything Swagger UI needs through (a blocked script or eval reports here).
    assert not [text for text in console_errors if "Content Security Policy" in text], (
        console_errors
    )
