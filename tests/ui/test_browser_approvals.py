"""Approvals in the UI, in headless Chromium, against uvicorn, the real worker, Temporal and
PostgreSQL (the runner is a double; each run's callback events are sent by the test): the
requester sees the plan and no decision; an admin finds it on the approvals page with its plan,
approves it with a comment, and it is built."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from settings import Settings
from tests.api.test_approvals_api import approval_template
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.ui.support import create_deployment, send_events, wait_status
from tests.ui.test_browser_operations import run_events
from tests.workflows.test_lifecycle import triggered
from vocabulary.runs import RunAction
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in  # noqa: E402


async def test_an_admin_approves_from_the_approvals_page_and_it_is_built(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await approval_template(http, admin)
    deployment = await create_deployment(http, operator, template_id, "pg-awaiting")
    await triggered(runner, 1)
    await send_events(http, settings, deployment, run_events(task="Show the plan"))

    async def planned() -> bool:
        url = f"/api/deployments/{deployment['id']}"
        return bool((await http.get(url, headers=operator.headers)).json()["plan"])

    await wait_for(planned)

    # The requester sees the plan, and no decision to make.
    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    section = page.get_by_role("region", name="Approval")
    await expect(section).to_contain_text("pending")
    await expect(section.get_by_role("table", name="Disks it would build")).to_contain_text(
        "/data/pgdata"
    )
    await expect(section).to_contain_text("********")  # the password, masked
    await expect(section.get_by_role("button", name="Approve")).to_be_hidden()

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, admin)
    await page.goto("/admin/approvals")
    card = page.locator(f'article[data-id="{deployment["id"]}"]')
    await expect(card).to_contain_text(f"Requested by {operator.username}")
    await expect(card.get_by_role("table", name="Disks it would build")).to_contain_text("20 GB")
    await card.get_by_label("Comment (optional)").fill("capacity checked")
    await card.get_by_role("button", name="Approve").click()
    await expect(page.get_by_text("Nothing waits for approval.")).to_be_visible()

    await triggered(runner, 2)
    assert runner.triggers[1].action == RunAction.DEPLOY
    approved = await wait_status(http, operator, deployment["id"], S.QUEUED)
    assert approved["approval"]["comment"] == "capacity checked"
    assert approved["approval"]["by"] == admin.username
