"""The signed-in user's own page, in headless Chromium against uvicorn and PostgreSQL: their
quota and use, and their webhook: a URL refused at its field, one saved with its secret shown
once, a new secret, and the webhook removed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from settings import Settings

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in  # noqa: E402


async def test_a_user_sets_their_webhook_and_sees_its_secret_once(
    page: Page, http: httpx.AsyncClient, make_user: Any, settings: Settings
) -> None:
    settings.webhook_allow_private = True  # the receiver of a dev machine is on 127.0.0.1
    operator = await make_user("operator")
    await sign_in(page, operator)
    await page.get_by_role("link", name=operator.username).click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await expect(page.locator("dl")).to_contain_text("0 of 10")

    form = page.get_by_role("form", name="Your webhook")
    url = form.get_by_label("Webhook URL")
    await url.fill("ftp://hooks.example.com/x")
    await form.get_by_role("button", name="Save").click()
    await expect(url).to_have_attribute("aria-invalid", "true")

    await url.fill("http://127.0.0.1:9/hook")
    await form.get_by_role("button", name="Save").click()
    notice = page.get_by_role("status").filter(has_text="shown this once")
    await expect(notice).to_be_focused()
    secret = await notice.locator("code").inner_text()
    assert len(secret) >= 32
    me = (await http.get("/api/users/me", headers=operator.headers)).json()
    assert me["webhook_url"] == "http://127.0.0.1:9/hook"
    assert secret not in str(me)

    await form.get_by_role("button", name="New secret").click()
    rotated = page.get_by_role("status").filter(has_text="shown this once")
    await expect(rotated.locator("code")).not_to_have_text(secret)

    await page.reload()
    await expect(url).to_have_value("http://127.0.0.1:9/hook")
    await expect(page.get_by_text("shown this once")).to_have_count(0)
    await url.fill("")
    await form.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status").filter(has_text="Webhook removed")).to_be_visible()
    me = (await http.get("/api/users/me", headers=operator.headers)).json()
    assert me["webhook_url"] is None
