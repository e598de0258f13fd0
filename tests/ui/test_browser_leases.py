"""Leases in the UI: the list narrowed to leases ending soon, and extending a lease from the
deployment page, in headless Chromium, against uvicorn, the real worker, Temporal and PostgreSQL
(the runner is a double; the run's callback events are sent by the test)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.doubles import RecordingRunnerDouble
from tests.ui.support import create_deployment, send_events, wait_status
from tests.ui.test_browser_operations import run_events
from tests.workflows.test_lease_time_skipping import leased_template
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in  # noqa: E402

DAY = 86400


async def test_the_owner_extends_the_lease_until_the_maximum_refuses(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await leased_template(http, admin, lease_s=DAY, max_lease_s=2 * DAY)
    deployment = await create_deployment(http, operator, template_id, "pg-leased")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await send_events(http, settings, deployment, run_events())
    done = await wait_status(http, operator, deployment["id"], S.SUCCEEDED)

    await sign_in(page, operator)
    # The list narrows to leases ending soon.
    await page.goto("/deployments")
    await page.get_by_label("Lease ends").select_option(label="within 7 days")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"expiring_within_s=604800"))
    # The address changes before the filtered page replaces the old one, whose form and row
    # would otherwise be the ones used next: only a filtered page offers Clear.
    await expect(page.get_by_role("link", name="Clear", exact=True)).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text="pg-leased")).to_have_count(1)
    await page.get_by_label("Lease ends").select_option(label="within 1 hour")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No deployments match these filters.")).to_be_visible()

    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.locator(".live")).to_have_text(re.compile("Live|Settled|Final"))
    form = page.get_by_role("form", name="Extend lease")
    await expect(form).to_be_visible()
    await expect(page.locator(f'time[title="{done["expires_at"]}"]')).to_have_count(1)

    await form.get_by_label("Extend the lease by").select_option(label="1 day")
    await form.get_by_role("button", name="Extend lease").click()
    extended = page.get_by_role("status").filter(has_text="Lease extended")
    await expect(extended).to_be_focused()
    moved = await http.get(f"/api/deployments/{deployment['id']}", headers=operator.headers)
    new_expiry = moved.json()["expires_at"]
    assert new_expiry != done["expires_at"]
    await expect(page.locator(f'dd time[title="{new_expiry}"]')).to_have_count(1)

    # Another day would end it past max_lease_s (two days) from now: the API's reason shows.
    await form.get_by_role("button", name="Extend lease").click()
    refused = page.get_by_role("alert").filter(has_text="Could not extend the lease")
    await expect(refused).to_contain_text("max_lease_s")
    await expect(refused).to_be_focused()
    await expect(page.locator(f'dd time[title="{new_expiry}"]')).to_have_count(1)

    # Being destroyed, the lease is no longer offered.
    await page.get_by_role("group", name="Actions").get_by_role("button", name="Destroy").click()
    dialog = page.get_by_role("dialog", name="Destroy pg-leased?")
    await dialog.get_by_label("Type pg-leased to confirm").fill("pg-leased")
    await dialog.get_by_role("button", name="Destroy pg-leased").click()
    await expect(page.locator("h1 .badge")).to_have_text("destroying")
    await expect(form).to_be_hidden()
