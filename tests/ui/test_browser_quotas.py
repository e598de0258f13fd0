"""An admin sets and clears a user's quota on the users page, in headless Chromium against
uvicorn and PostgreSQL: the quota that applies and the use in the user's row, a refused value
shown in that row, and an empty limit back to the role's default."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in  # noqa: E402
from tests.ui.support import screenshot  # noqa: E402


async def test_an_admin_sets_and_clears_a_users_quota(
    page: Page, http: httpx.AsyncClient, make_user: Any, make_template: Any
) -> None:
    admin, alice = await make_user("admin"), await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    launched = await http.post("/api/deployments", json=body, headers=alice.headers)
    assert launched.status_code == 201, launched.text

    await sign_in(page, admin)
    await page.get_by_role("link", name="Users").click()
    row = page.locator(f'tr[data-username="{alice.username}"]')
    # The operator's defaults.
    await expect(row).to_contain_text("Deployments: 1 of 10; disks: 25 GB of 1000 GB")
    quota = row.get_by_role("form", name=f"Quota of {alice.username}")
    deployments = quota.get_by_label(f"Max deployments of {alice.username}")
    gigabytes = quota.get_by_label(f"Max GB of {alice.username}")
    await expect(deployments).to_have_value("")

    await deployments.fill("2")
    await gigabytes.fill("100")
    await quota.get_by_role("button", name="Save quota").click()
    await expect(
        page.get_by_role("status").filter(has_text=f"{alice.username} may now hold 2 deployments")
    ).to_contain_text("and 100 GB")
    await expect(row).to_contain_text("Deployments: 1 of 2; disks: 25 GB of 100 GB")
    await expect(deployments).to_have_value("2")
    await expect(deployments).to_be_focused()
    await expect(page.locator(f'tr[data-username="{admin.username}"]')).to_contain_text(
        "Deployments: 0 (no limit); disks: 0 GB (no limit)"
    )
    await screenshot(page, "quotas-admin-users")
    me = (await http.get("/api/users/me", headers=alice.headers)).json()
    assert me["quota"] == {
        "max_active_deployments": 2,
        "max_total_gb": 100,
        "active_deployments": 1,
        "total_gb": 25,
    }

    # A negative limit: the API's reason in the row, nothing changed.
    await gigabytes.fill("-5")
    await quota.get_by_role("button", name="Save quota").click()
    await expect(row.locator(".row-status.field-error")).to_contain_text("max_total_gb")
    await expect(row).to_contain_text("25 GB of 100 GB")

    # Emptied: back to the role's defaults.
    await deployments.fill("")
    await gigabytes.fill("")
    await quota.get_by_role("button", name="Save quota").click()
    await expect(row).to_contain_text("Deployments: 1 of 10; disks: 25 GB of 1000 GB")
    listed = (await http.get("/api/users", headers=admin.headers)).json()
    [mine] = [user for user in listed if user["id"] == alice.id]
    assert (mine["max_active_deployments"], mine["max_total_gb"]) == (None, None)
