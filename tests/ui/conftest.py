"""UI tests: the app served by uvicorn (`live_api`), and one headless Chromium per session driven
by Playwright's async API (the tests run in pytest-asyncio's loop)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ui.support import screenshot

CHROMIUM = Path(os.environ.get("PROVISIO_CHROMIUM", "/usr/bin/chromium"))
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install it with: {INSTALL_CHROMIUM}")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip(
            "Playwright is not installed; install it with: .venv/bin/pip install playwright"
        )
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def new_page(
    browser: Any, live_api: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """Opens pages in fresh browser contexts; closes them (and their streams) before the server
    stops. Uncaught JavaScript errors fail the test; a failed test leaves screenshots."""
    contexts: list[Any] = []
    pages: list[Any] = []
    errors: list[str] = []

    async def open_page(viewport: dict[str, int] = DESKTOP, storage_state: Any = None) -> Any:
        context = await browser.new_context(
            base_url=live_api, viewport=viewport, storage_state=storage_state
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append(page)
        return page

    yield open_page
    if request.node.stash.get(FAILED, False):
        for index, page in enumerate(pages):
            await screenshot(page, f"FAILED-{request.node.name}-{index}")
    for context in contexts:
        await context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
async def page(new_page: Any) -> Any:
    return await new_page()


@pytest.fixture
async def http(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the served API (`live_api`), for what the test does beside the browser."""
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        yield client
