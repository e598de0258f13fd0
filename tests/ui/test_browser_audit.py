"""The audit page in headless Chromium against uvicorn, Temporal and PostgreSQL: an admin reaches
it from the navigation, reads who did what (before → after), filters it, pages through it, and
sees a refused filter at its field; others get no link and no page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.conftest import PHONE  # noqa: E402
from tests.ui.pages import sign_in  # noqa: E402
from tests.ui.support import screenshot  # noqa: E402


async def test_an_admin_reads_filters_and_pages_the_audit_trail(
    page: Page, new_page: Any, http: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    admin = await make_user("admin")
    for name in ("erin", "frank", "grace"):
        body = {"username": name, "password": "a-long-password", "role": "viewer"}
        created = await http.post("/api/users", json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
    erin = (await http.get("/api/users", headers=admin.headers)).json()
    erin_id = next(u["id"] for u in erin if u["username"] == "erin")
    promoted = await http.patch(
        f"/api/users/{erin_id}", json={"role": "operator"}, headers=admin.headers
    )
    assert promoted.status_code == 200
    launch = {"template_id": await make_template(), "deployment_name": "pg-audited"}
    launched = await http.post("/api/deployments", json=launch, headers=admin.headers)
    assert launched.status_code == 201, launched.text

    await sign_in(page, admin)
    await page.get_by_role("navigation").get_by_role("link", name="Audit").click()
    await expect(page).to_have_url(re.compile(r"/admin/audit$"))
    await expect(page.get_by_role("heading", name="Audit", level=1)).to_be_visible()
    rows = page.locator("table.audit tbody tr")
    await expect(rows).to_have_count(5)
    # Newest first: the launch, linked to its deployment; then the role change, before → after.
    newest = rows.nth(0)
    await expect(newest.locator("[data-label=Action]")).to_have_text("deployment.launch")
    await expect(newest.get_by_role("link", name=re.compile(r"deployment #\d+"))).to_be_visible()
    change = rows.nth(1)
    await expect(change.locator("[data-label=Who]")).to_contain_text(admin.username)
    await expect(change.locator("[data-label=From]")).to_have_text("127.0.0.1")
    await expect(change.locator("[data-label='Before → after']")).to_have_text(
        "role: viewer → operator"
    )
    await screenshot(page, "audit-trail")

    # On a phone each entry is a card, its fields labelled.
    phone = await new_page(viewport=PHONE, storage_state=await page.context.storage_state())
    await phone.goto("/admin/audit")
    card = phone.locator("table.audit tbody tr").nth(1)
    await expect(card.locator("[data-label='Before → after']")).to_have_text(
        "role: viewer → operator"
    )
    assert (await card.bounding_box() or {"width": 999})["width"] <= PHONE["width"]
    await screenshot(phone, "audit-trail-phone")

    # Filtered by action (in the address, so the view can be shared).
    await page.get_by_label("Action").select_option("user.create")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"action=user\.create"))
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0).locator("[data-label='Before → after']")).to_contain_text("grace")

    # Pages of two: "Next page" walks back in time, "Newest" returns.
    await page.goto("/admin/audit?action=user.create&limit=2")
    await expect(rows).to_have_count(2)
    await page.get_by_role("link", name="Next page →").click()
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0).locator("[data-label='Before → after']")).to_contain_text("erin")
    await expect(page.get_by_role("link", name="Next page →")).to_have_count(0)
    await page.get_by_role("link", name="← Newest").click()
    await expect(rows).to_have_count(2)

    # A filter the API refuses is said at its field, which takes focus.
    await page.goto("/admin/audit")
    await page.get_by_label("Target id").fill("twelve")
    await page.get_by_role("button", name="Filter").click()
    target_id = page.get_by_label("Target id")
    await expect(target_id).to_have_attribute("aria-invalid", "true")
    await expect(target_id).to_be_focused()
    await expect(page.get_by_text("These filters were refused.")).to_be_visible()


async def test_others_have_no_audit_page(page: Page, make_user: Any) -> None:
    operator = await make_user("operator")
    await sign_in(page, operator)
    await expect(page.get_by_role("navigation").get_by_role("link", name="Audit")).to_have_count(0)
    await page.goto("/admin/audit")
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
