"""The web UI in headless Chromium, against uvicorn, the real worker, Temporal and PostgreSQL.

The pipeline's part is played by the test: the worker's runner is a recording double, and the
callback plugin's events are sent, signed, to the callback endpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Deployment
from db.session import SessionMaker
from settings import Settings
from tests.callback_events import event
from tests.tapped_playbook import (
    FAILING_STDERR_FIRST,
    FAILING_STDERR_LAST,
    FAILING_TASK,
    SECRET,
    run_playbook_into_api,
)
from tests.ui.conftest import PHONE
from tests.ui.support import (
    create_deployment,
    screenshot,
    send_events,
    wait_status,
)
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in, step  # noqa: E402


async def count_deployments(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Deployment)) or 0)


async def test_operator_creates_a_deployment_and_watches_it_succeed_live(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()

    await page.goto("/deployments")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fdeployments$"))
    await screenshot(page, "01-sign-in")
    await page.get_by_label("Username").fill(operator.username)
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Incorrect username or password")
    await sign_in(page, operator)
    await expect(page.get_by_text("No deployments yet.")).to_be_visible()
    await screenshot(page, "02-deployments-empty")

    # Templates: list, then detail.
    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Templates", exact=True)
        .click()
    )
    row = page.get_by_role("row").filter(has_text="postgres-small")
    await expect(row).to_contain_text("postgresql")
    await expect(row).to_contain_text("/data/pgdata 20 GB ext4")
    await screenshot(page, "03-templates")
    await row.get_by_role("link", name="postgres-small").click()
    await expect(page.get_by_role("heading", name="postgres-small v1")).to_be_visible()
    await expect(page.get_by_text("/data/pgwal").first).to_be_visible()
    await screenshot(page, "04-template-detail")

    # New deployment: a bad disk size is refused by the API, and the error sits at its field.
    posts: list[Any] = []

    def record(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/deployments"):
            posts.append(request)

    page.on("request", record)
    await page.get_by_role("link", name="Deploy this template").click()
    await expect(page).to_have_url(re.compile(rf"/deployments/new\?template={template_id}$"))
    await page.get_by_label("Deployment name").fill("pg-ui")
    size = page.locator("#disk-0-size_gb")
    await size.fill("0")
    await page.get_by_role("button", name="Create deployment").click()
    size_field = page.locator(".field", has=size)
    await expect(size_field.locator(".field-error")).to_contain_text("greater than or equal to 1")
    await expect(size).to_have_attribute("aria-invalid", "true")
    await expect(size).to_be_focused()
    await expect(page.locator("#disk-1-size_gb")).not_to_have_attribute("aria-invalid", "true")
    await screenshot(page, "05-new-deployment-error")
    assert await count_deployments(sessionmaker) == 0

    await size.fill("40")
    await page.locator("#config-max_connections").fill("250")
    await page.locator("#disk-1-filesystem_type").select_option("ext4")
    # A double click sends at most one request per click; the form's Idempotency-Key makes
    # them one deployment either way.
    await page.get_by_role("button", name="Create deployment").dblclick()
    await expect(page).to_have_url(re.compile(r"/deployments/\d+$"))
    deployment_id = int(page.url.rsplit("/", 1)[1])
    assert await count_deployments(sessionmaker) == 1
    # Every request of this form instance carried the same Idempotency-Key.
    keys = {await r.header_value("idempotency-key") for r in posts}
    assert len(posts) >= 2 and len(keys) == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", keys.pop() or "")

    detail = (await http.get(f"/api/deployments/{deployment_id}", headers=operator.headers)).json()
    assert detail["configuration"]["max_connections"] == 250
    sizes = {
        d["mount_point"]: (d["size_gb"], d["filesystem_type"]) for d in detail["disk_allocations"]
    }
    assert sizes == {"/data/pgdata": (40, "ext4"), "/data/pgwal": (5, "ext4")}

    # The detail page follows the deployment without a reload.
    await page.evaluate("window.__sameDocument = true")
    await expect(page.get_by_role("heading", name=re.compile("^pg-ui"))).to_be_visible()
    await expect(step(page, "Pipeline triggered")).to_have_class(re.compile(r"\bdone\b"))
    await expect(step(page, "Running")).to_have_class(re.compile(r"\bcurrent\b"))
    await expect(
        page.get_by_role("link", name=re.compile("Workflow in Temporal UI"))
    ).to_have_attribute("href", detail["temporal_url"])
    await expect(page.locator(".links")).to_contain_text(f"double-{deployment_id}")
    await expect(page.locator(".live")).to_have_text("Live")

    await send_events(http, settings, detail, [
        event(1, "playbook_on_start"),
        event(2, "playbook_on_play_start", task="Provision"),
        event(3, "playbook_on_task_start", task="Make filesystem"),
        event(4, "runner_on_ok", "web-1", "Make filesystem", changed=True),
        event(5, "runner_on_ok", "web-2", "Make filesystem", changed=False),
    ])  # fmt: skip
    progress = page.locator("table.progress")
    await expect(progress.locator('tr[data-host="web-1"]')).to_contain_text("changed")
    await expect(page.locator("h1 .badge")).to_have_text("running")
    await expect(step(page, "Running")).to_have_class(re.compile(r"\bdone\b"))
    await screenshot(page, "06-deployment-running")

    await send_events(http, settings, detail, [
        event(6, "playbook_on_task_start", task="Mount"),
        event(7, "runner_on_ok", "web-1", "Mount"),
        event(8, "playbook_on_stats", stats={"web-1": {"ok": 2, "changed": 1, "failures": 0}},
              total_events=8),
    ])  # fmt: skip
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    result = step(page, "Result")
    await expect(result).to_have_class(re.compile(r"\bresult-succeeded\b"))
    await expect(result).to_contain_text("Deployment succeeded")
    await expect(progress.locator('tr[data-task="Mount"][data-host="web-1"]')).to_contain_text("ok")
    # Succeeded is settled, not the end: it can still be destroyed, so the page keeps watching.
    await expect(page.locator(".live")).to_have_text("Settled: watching for changes")
    await expect(page.locator(".failure")).to_be_hidden()
    assert await page.evaluate("window.__sameDocument") is True
    await screenshot(page, "07-deployment-succeeded")

    await (
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    )
    row = page.get_by_role("row").filter(has_text="pg-ui")
    await expect(row.locator(".badge")).to_have_text("succeeded")
    await screenshot(page, "08-deployments")


async def test_failed_deployment_shows_its_reason_and_the_list_updates_live(
    new_page: Any,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    deployment = await create_deployment(http, operator, template_id, "pg-broken")
    await create_deployment(http, operator, template_id, "pg-other")
    await wait_status(http, operator, deployment["id"], "queued")

    page = await new_page()
    await sign_in(page, operator)
    row = page.get_by_role("row").filter(has_text="pg-broken")
    await expect(row.locator(".badge")).to_have_text("queued")

    await send_events(http, settings, deployment, [
        event(1, "playbook_on_start"),
        event(2, "playbook_on_task_start", task="Make filesystem"),
        event(3, "runner_on_failed", "web-2", "Make filesystem", msg="mkfs: device busy"),
        event(4, "playbook_on_stats", stats={"web-2": {"ok": 0, "failures": 1}}, total_events=4),
    ])  # fmt: skip
    await expect(row.locator(".badge")).to_have_text("failed", timeout=20_000)  # no reload

    # Filters: by status, then clear.
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=failed"))
    await expect(page.get_by_role("row").filter(has_text="pg-other")).to_have_count(0)
    await expect(row).to_be_visible()

    await row.get_by_role("link", name="pg-broken").click()
    reason = page.locator(".failure")
    await expect(reason).to_contain_text(
        "task 'Make filesystem' failed on web-2: mkfs: device busy"
    )
    await expect(step(page, "Result")).to_have_class(re.compile(r"\bresult-failed\b"))
    await expect(page.locator('table.progress tr[data-host="web-2"]')).to_contain_text("failed")
    await screenshot(page, "09-deployment-failed")

    # The same page on a phone.
    phone = await new_page(viewport=PHONE, storage_state=await page.context.storage_state())
    await phone.goto(f"/deployments/{deployment['id']}")
    await expect(phone.locator(".failure")).to_contain_text("mkfs: device busy")
    await screenshot(phone, "10-deployment-failed-phone")
    await phone.goto("/deployments")
    await expect(phone.get_by_text("pg-broken")).to_be_visible()
    await screenshot(phone, "11-deployments-phone")


async def test_a_failed_tasks_stderr_shows_on_the_deployment_page(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """A real ansible-playbook run, its events sent by the real plugin through the API."""
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-stderr")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    await expect(step(page, "Pipeline triggered")).to_have_class(re.compile(r"\bdone\b"))

    run = await run_playbook_into_api(
        settings.public_url, settings.callback_secret, deployment, tmp_path
    )
    assert run.returncode == 2, run.output

    # The reason, and under it the stderr of the task that failed the run, without a reload.
    failure = page.locator(".failure")
    await expect(failure).to_contain_text(f"task '{FAILING_TASK}' failed on localhost")
    stderr = failure.locator("pre.stderr")
    await expect(stderr).to_contain_text(FAILING_STDERR_FIRST)
    await expect(stderr).to_contain_text(FAILING_STDERR_LAST)
    await expect(stderr).to_contain_text("characters trimmed")  # bounded by the contract
    # Per task: the failed command's stderr folded under its message; no_log output nowhere.
    failed_row = page.locator(f'table.progress tr[data-task="{FAILING_TASK}"]')
    await expect(failed_row).to_contain_text("non-zero return code")
    await failed_row.get_by_text("stderr").click()  # unfolded, and kept so by later renders
    await expect(failed_row.locator("details.stderr pre")).to_be_visible()
    await expect(failed_row.locator("details.stderr pre")).to_contain_text(FAILING_STDERR_LAST)
    secret_row = page.locator('table.progress tr[data-task="Read a secret"]')
    await expect(secret_row).to_contain_text("(censored: no_log)")
    await expect(secret_row.locator("details.stderr")).to_have_count(0)
    await expect(page.locator("main")).not_to_contain_text(SECRET)
    await expect(page.locator('table.progress tr[data-task="Only on LVM hosts"]')).to_contain_text(
        "skipped"
    )
    # The history's first row says what the seed says: created.
    await expect(step(page, "Created")).to_have_class(re.compile(r"\bdone\b"))
    await expect(page.locator('.raw-history .badge[data-status="created"]')).to_have_count(1)
    await screenshot(page, "12-deployment-failed-stderr")


async def test_viewer_sees_no_create_button_and_cannot_open_another_users_deployment(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
) -> None:
    operator = await make_user("operator")
    viewer = await make_user("viewer")
    deployment = await create_deployment(http, operator, await make_template(), "pg-private")

    # Keyboard only: the username field has focus, Tab to the password, Enter signs in.
    await page.goto("/login")
    await page.keyboard.type(viewer.username)
    await page.keyboard.press("Tab")
    await page.keyboard.type(viewer.password)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="My deployments")).to_be_visible()
    await expect(page.get_by_text("No deployments yet.")).to_be_visible()
    await expect(page.get_by_role("link", name="New deployment")).to_have_count(0)
    await expect(page.get_by_text("pg-private")).to_have_count(0)

    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Templates", exact=True)
        .focus()
    )
    await page.keyboard.press("Enter")
    # After a page change the focus is on the new page's heading, for screen readers.
    await expect(page.get_by_role("heading", name="Templates")).to_be_focused()
    await expect(page.get_by_role("row").filter(has_text="postgres-small")).to_be_visible()
    await expect(page.get_by_role("link", name="Deploy", exact=True)).to_have_count(0)
    await expect(page.get_by_role("link", name="New deployment")).to_have_count(0)
    await expect(page.get_by_role("link", name="Users")).to_have_count(0)

    await page.goto("/deployments/new")
    await expect(page.get_by_text("can look at deployments but not create them")).to_be_visible()
    await expect(page.get_by_role("button", name="Create deployment")).to_have_count(0)

    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await expect(page.get_by_text("pg-private")).to_have_count(0)
    await screenshot(page, "12-viewer-not-found")

    await page.goto("/admin/users")
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/deployments")
    await expect(page).to_have_url(re.compile(r"/login\?next="))


async def test_admin_manages_users_and_templates(
    page: Page, live_api: str, make_user: Any, make_template: Any
) -> None:
    admin = await make_user("admin")
    await make_template("redis-small")
    await sign_in(page, admin)
    await expect(page.get_by_role("heading", name="All deployments")).to_be_visible()

    # Users: create (a short password is refused at its field), change role, disable.
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill("short")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.locator("#new-password-error")).to_contain_text("at least 8 characters")
    await page.get_by_label("Password").fill("a-long-password")
    await page.get_by_role("button", name="Create user").click()
    await expect(
        page.get_by_role("status").filter(has_text="Created alice (operator)")
    ).to_be_visible()
    alice = page.locator('tr[data-username="alice"]')
    await alice.get_by_label("Role of alice").select_option("viewer")
    await alice.get_by_role("button", name="Change role").click()
    await expect(page.get_by_text("alice is now viewer.")).to_be_visible()
    await page.locator('tr[data-username="alice"]').get_by_role("button", name="Disable").click()
    await expect(page.locator('tr[data-username="alice"]')).to_contain_text("disabled")
    # The last admin cannot demote themself: the API's refusal shows in the row.
    me = page.locator(f'tr[data-username="{admin.username}"]')
    await me.get_by_label(f"Role of {admin.username}").select_option("operator")
    await me.get_by_role("button", name="Change role").click()
    await expect(me).to_contain_text("last active admin")
    await screenshot(page, "13-admin-users")

    # Templates: create (a bad disk size is refused at its field), new version, deactivate.
    await page.get_by_role("link", name="Manage templates").click()
    await page.get_by_label("Name", exact=True).fill("web")
    await page.get_by_label("Service type").fill("nginx")
    await page.get_by_label("Configuration (JSON object)").fill('{"workers": 4}')
    await page.locator("#tdisk-0-size_gb").fill("0")
    await page.locator("#tdisk-0-mount_point").fill("/srv/www")
    await page.locator("#tdisk-0-logical_volume").fill("lv_www")
    await page.get_by_role("button", name="Create template").click()
    await expect(page.locator("#tdisk-0-size_gb-error")).to_contain_text("1")
    await expect(page.locator("#tdisk-0-size_gb")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Configuration (JSON object)").fill("{not json")
    await page.get_by_role("button", name="Create template").click()
    await expect(page.locator("#tpl-configuration-error")).to_contain_text("Not valid JSON")
    # Declared overrides: a deployment may set `workers` only, from 1 to 16.
    rules = (
        '"provisio": {"overrides": {"workers": {"type": "integer", "minimum": 1, "maximum": 16}}}'
    )
    await page.get_by_label("Configuration (JSON object)").fill(
        '{"workers": 4, "user": "www", ' + rules + "}"
    )
    await page.locator("#tdisk-0-size_gb").fill("8")
    await page.get_by_role("button", name="Create template").click()
    await expect(page.get_by_text("Created web v1.")).to_be_visible()

    await (
        page.locator('tr[data-template="web v1"]').get_by_role("button", name="New version").click()
    )
    await expect(page.get_by_label("Name", exact=True)).to_have_value("web")
    await page.get_by_role("button", name="Create new version").click()
    await expect(page.get_by_text("Created web v2.")).to_be_visible()
    v1 = page.locator('tr[data-template="web v1"]')
    await v1.get_by_role("button", name="Deactivate").click()
    await expect(v1).to_contain_text("deactivated")
    await expect(v1.get_by_role("button", name="Activate")).to_be_visible()
    await screenshot(page, "14-admin-templates")

    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Templates", exact=True)
        .click()
    )
    await expect(page.get_by_role("link", name="web", exact=True)).to_have_count(1)  # v2 only
    await expect(page.get_by_role("row").filter(has_text="redis-small")).to_be_visible()

    # The deployment form offers what the template declares, with its bounds.
    await (
        page.get_by_role("row")
        .filter(has_text="web")
        .get_by_role("link", name="Deploy", exact=True)
        .click()
    )
    workers = page.get_by_label("workers", exact=True)
    await expect(workers).to_have_attribute("max", "16")
    await expect(page.locator("#config-workers-hint")).to_contain_text("1–16")
    await expect(page.get_by_text("Fixed by the template:")).to_be_visible()
    await expect(page.get_by_label("user", exact=True)).to_have_count(0)
    await page.get_by_label("Deployment name").fill("web-one")
    await workers.fill("99")
    await page.get_by_role("button", name="Create deployment").click()
    await expect(page.locator("#config-workers-error")).to_contain_text("16")
    await screenshot(page, "15-new-deployment-declared-overrides")
