"""Growing a disk from the deployment page, in headless Chromium, against uvicorn, the real
worker, Temporal and PostgreSQL (the runner is a double; each run's callback events are sent by
the test): a refusal over the template's cap shown as the API says it, a grow that runs as the
deployment's next run and ends with the new size in the disks table, and no form while
updating."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.api.test_resize_api import bounded_template
from tests.doubles import RecordingRunnerDouble
from tests.ui.support import create_deployment, send_events, wait_status
from tests.ui.test_browser_operations import run_events
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in, step  # noqa: E402


async def test_the_owner_grows_a_disk_and_sees_the_new_size(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await bounded_template(http, admin)
    deployment = await create_deployment(http, operator, template_id, "pg-growing")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await send_events(http, settings, deployment, run_events())
    await wait_status(http, operator, deployment["id"], S.SUCCEEDED)

    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.locator(".live")).to_have_text(re.compile("Live|Settled|Final"))
    wal = page.get_by_role("form", name="Resize /data/wal")
    await expect(wal).to_contain_text("now 5 GB")

    # Past the template's cap (60 GB in all): the API's reason, nothing changed.
    await wal.get_by_label("New size of /data/wal (GB)").fill("56")
    await wal.get_by_role("button", name="Grow").click()
    refused = page.get_by_role("alert").filter(has_text="Could not resize /data/wal")
    await expect(refused).to_contain_text("this template allows 60 GB in all")
    await expect(refused).to_be_focused()
    assert len(runner.triggers) == 1

    db = page.get_by_role("form", name="Resize /data/db")
    await db.get_by_label("New size of /data/db (GB)").fill("30")
    await db.get_by_role("button", name="Grow").click()
    accepted = page.get_by_role("status").filter(has_text="Resize requested: /data/db to 30 GB")
    await expect(accepted).to_be_focused()
    await expect(page.locator("h1 .badge")).to_have_text("updating")
    await expect(db).to_be_hidden()  # no second resize while one runs

    await send_events(http, settings, deployment, run_events(task="Grow the filesystems"), run=2)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    row = page.locator('tr[data-mount="/data/db"]')
    await expect(row).to_contain_text("30 GB")
    await expect(db).to_contain_text("now 30 GB, up to 50 GB")
    # The resize is a change, a phase of its own in the steps, with its run's tasks under
    # "Change".
    await expect(step(page, "Change requested")).to_contain_text(
        f"Resize requested: /data/db 10→30 GB by {operator.username}"
    )
    await expect(step(page, "Changed")).to_contain_text("succeeded")
    await expect(step(page, "Changed")).to_contain_text("Resize succeeded: /data/db 30 GB")
    await expect(page.get_by_role("heading", name="Change", exact=True)).to_be_visible()
    tasks = page.get_by_role("table", name="Change tasks and hosts")
    await expect(tasks.locator('tr[data-task="Grow the filesystems"]')).to_have_count(1)
