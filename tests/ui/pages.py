"""What the browser tests do on pages again and again (imported after Playwright is found)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect


async def sign_in(page: Page, account: Any) -> None:
    await page.goto("/login")
    await page.get_by_label("Username").fill(account.username)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def step(page: Page, label: str) -> Any:
    """A step of the deployment page's timeline, by its label."""
    return page.locator(f'li.step[data-step="{label}"]')
