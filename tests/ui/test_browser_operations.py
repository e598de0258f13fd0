"""Cancel, destroy and retry from the deployment page, in headless Chromium, against uvicorn, the
real worker, Temporal and PostgreSQL.

The pipeline's part is played by the test: the worker's runner is a recording double, and each
run's callback events are sent, signed with that run's own token (a teardown is the deployment's
next run), to the callback endpoint.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.callback_events import event
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.ui.support import create_deployment, screenshot, send_events, wait_status
from vocabulary.runs import RunAction
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, Request, expect  # noqa: E402

from tests.ui.pages import sign_in, step  # noqa: E402

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DONE = re.compile(r"\bdone\b")


def run_events(*, failed: bool = False, task: str = "Remove the image files") -> list[Any]:
    """One playbook run's events, start to stats: ok, or failed on web-1."""
    outcome = "runner_on_failed" if failed else "runner_on_ok"
    stats = {"web-1": {"ok": 1, "changed": 1, "failures": 1 if failed else 0}}
    return [
        event(1, "playbook_on_start"),
        event(2, "playbook_on_task_start", task=task),
        event(3, outcome, "web-1", task, changed=not failed, msg="disk busy" if failed else ""),
        event(4, "playbook_on_stats", stats=stats, total_events=4),
    ]


async def teardown_triggered(runner: RecordingRunnerDouble, deployment_id: int, run: int) -> None:
    async def started() -> bool:
        return (run, RunAction.DESTROY) in runner.actions(deployment_id)

    await wait_for(started)


def operation_requests(page: Page, operation: str) -> list[Request]:
    """Every POST the page sends to /api/deployments/{id}/<operation>, recorded as it goes."""
    sent: list[Request] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith(f"/{operation}"):
            sent.append(request)

    page.on("request", record)
    return sent


async def test_operator_cancels_a_queued_deployment_and_watches_it_end_cancelled(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-cancel")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.locator(".live")).to_have_text("Live")
    actions = page.get_by_role("group", name="Actions")
    await expect(actions.get_by_role("button")).to_have_text(["Cancel deployment"])
    sent = operation_requests(page, "cancel")

    # The confirmation names the deployment; going back sends nothing.
    await actions.get_by_role("button", name="Cancel deployment").click()
    dialog = page.get_by_role("dialog", name="Cancel pg-cancel?")
    await expect(dialog).to_contain_text("removes everything it has built so far")
    await expect(dialog.get_by_role("button", name="Go back")).to_be_focused()
    await screenshot(page, "16-cancel-confirm")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(actions.get_by_role("button", name="Cancel deployment")).to_be_focused()
    assert sent == []

    await actions.get_by_role("button", name="Cancel deployment").click()
    await dialog.get_by_role("button", name="Cancel pg-cancel").click()
    done = page.get_by_role("status").filter(has_text="Cancel requested")
    await expect(done).to_contain_text("pg-cancel is cancelling")
    await expect(done).to_be_focused()
    await expect(page.locator("h1 .badge")).to_have_text("cancelling")
    await expect(actions.get_by_role("button")).to_have_count(0)
    assert len(sent) == 1
    assert UUID.fullmatch(await sent[0].header_value("idempotency-key") or "")
    await expect(step(page, "Cancel requested")).to_have_class(DONE)
    await expect(step(page, "Running")).to_have_class(re.compile(r"\bskipped\b"))

    # The run was stopped; the teardown is the deployment's second run.
    await teardown_triggered(runner, deployment["id"], 2)
    await expect(step(page, "Teardown triggered")).to_have_class(DONE)
    await expect(step(page, "Torn down")).to_have_class(re.compile(r"\bcurrent\b"))
    await screenshot(page, "17-cancelling")
    await send_events(http, settings, deployment, run_events(), run=2)

    await expect(page.locator("h1 .badge")).to_have_text("cancelled")
    await expect(done).to_have_count(0)  # it said "is cancelling": no longer true
    await expect(step(page, "Torn down")).to_have_class(re.compile(r"\bresult-cancelled\b"))
    teardown = page.locator("table.progress", has=page.locator("caption", has_text="Teardown"))
    await expect(teardown.locator('tr[data-host="web-1"]')).to_contain_text("changed")
    disk_states = page.locator("tr[data-mount] [data-state]")
    await expect(disk_states).to_have_text(["released", "released"])
    await expect(page.locator(".live")).to_have_text("Final: no more updates")
    await expect(actions.get_by_role("button")).to_have_count(0)
    await screenshot(page, "18-cancelled")

    # The list filters the new statuses.
    await page.get_by_role("link", name="Deployments", exact=True).first.click()
    await page.get_by_label("Status").select_option("cancelled")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=cancelled"))
    row = page.get_by_role("row").filter(has_text="pg-cancel")
    await expect(row.locator(".badge")).to_have_text("cancelled")


async def test_operator_destroys_a_succeeded_deployment_after_typing_its_name(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-gone")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await send_events(http, settings, deployment, run_events(task="Make filesystem"))
    await wait_status(http, operator, deployment["id"], S.SUCCEEDED)

    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    await expect(page.locator("tr[data-mount] [data-state]")).to_have_text(
        ["allocated", "allocated"]
    )
    # Its stream has ended, but the page keeps watching: a succeeded deployment can still go.
    await expect(page.locator(".live")).to_have_text("Settled: watching for changes")
    actions = page.get_by_role("group", name="Actions")
    await expect(actions.get_by_role("button")).to_have_text(["Destroy"])
    sent = operation_requests(page, "destroy")

    await actions.get_by_role("button", name="Destroy").click()
    dialog = page.get_by_role("dialog", name="Destroy pg-gone?")
    await expect(dialog).to_contain_text("This removes its disks and everything on them.")
    typed = dialog.get_by_label("Type pg-gone to confirm")
    await expect(typed).to_be_focused()
    await dialog.get_by_role("button", name="Destroy pg-gone").click()
    await expect(dialog).to_contain_text("Type pg-gone exactly as shown.")
    await expect(typed).to_have_attribute("aria-invalid", "true")
    assert sent == []
    await typed.fill("pg-gone")
    await screenshot(page, "19-destroy-confirm")
    await dialog.get_by_role("button", name="Destroy pg-gone").click()

    await expect(page.locator("h1 .badge")).to_have_text("destroying")
    await expect(page.locator(".live")).to_have_text("Live")
    await expect(step(page, "Result")).to_have_class(re.compile(r"\bresult-succeeded\b"))
    await expect(step(page, "Destroy requested")).to_have_class(DONE)
    assert len(sent) == 1 and UUID.fullmatch(await sent[0].header_value("idempotency-key") or "")
    await teardown_triggered(runner, deployment["id"], 2)
    await expect(step(page, "Teardown triggered")).to_have_class(DONE)
    await send_events(http, settings, deployment, run_events(), run=2)

    await expect(page.locator("h1 .badge")).to_have_text("destroyed")
    await expect(step(page, "Torn down")).to_have_class(re.compile(r"\bresult-destroyed\b"))
    await expect(page.locator("tr[data-mount] [data-state]")).to_have_text(["released", "released"])
    await expect(actions.get_by_role("button")).to_have_count(0)
    await expect(page.locator(".live")).to_have_text("Final: no more updates")
    await screenshot(page, "20-destroyed")


async def test_a_failed_deployment_is_retried_as_attempt_two_and_a_refusal_shows_why(
    new_page: Any,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    failing = run_events(failed=True, task="Make filesystem")
    deployment = await create_deployment(http, operator, template_id, "pg-again")
    refused = await create_deployment(http, operator, template_id, "pg-refused")
    for created in (deployment, refused):
        await wait_status(http, operator, created["id"], S.QUEUED)
        await send_events(http, settings, created, failing)
        await wait_status(http, operator, created["id"], S.FAILED)

    page = await new_page()
    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    failure = page.locator(".failure")
    await expect(failure).to_contain_text("task 'Make filesystem' failed on web-1: disk busy")
    await expect(failure.locator(".retention")).to_contain_text("kept until")
    await expect(page.locator(".facts")).to_contain_text("Kept until")
    actions = page.get_by_role("group", name="Actions")
    await expect(actions.get_by_role("button")).to_have_text(["Destroy", "Retry"])

    await actions.get_by_role("button", name="Retry").click()
    dialog = page.get_by_role("dialog", name="Retry pg-again?")
    await expect(dialog).to_contain_text("as attempt 2")
    await dialog.get_by_role("button", name="Retry pg-again").click()
    await expect(page.locator("h1 .attempt")).to_have_text("attempt 2")
    await expect(page.get_by_role("heading", name="Steps — attempt 2")).to_be_visible()
    await expect(step(page, "Retry requested")).to_have_class(DONE)
    await expect(step(page, "Pipeline triggered")).to_have_class(DONE)
    await expect(page.locator(".failure")).to_be_hidden()
    await expect(page.locator("table.progress tr[data-host]")).to_have_count(0)  # a new run
    assert (2, RunAction.DEPLOY) in runner.actions(deployment["id"])
    await send_events(http, settings, deployment, run_events(task="Make filesystem"), run=2)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    await expect(step(page, "Result")).to_have_class(re.compile(r"\bresult-succeeded\b"))
    await page.get_by_text("Full history").click()
    history = page.locator(".raw-history li")
    await expect(history.filter(has_text="Retry requested").locator(".attempt")).to_have_text(
        "attempt 2"
    )
    await expect(history.filter(has_text="Deployment created").locator(".attempt")).to_have_count(0)
    await screenshot(page, "21-retried")

    # Meanwhile someone destroys the other one: the page's retry is refused, with the reason.
    await page.goto(f"/deployments/{refused['id']}")
    await expect(page.locator(".live")).to_have_text("Settled: watching for changes")
    await actions.get_by_role("button", name="Retry").click()
    dialog = page.get_by_role("dialog", name="Retry pg-refused?")
    await expect(dialog).to_be_visible()
    elsewhere = await http.post(
        f"/api/deployments/{refused['id']}/destroy", headers=operator.headers
    )
    assert elsewhere.status_code == 202, elsewhere.text
    await dialog.get_by_role("button", name="Retry pg-refused").click()
    alert = page.get_by_role("alert").filter(has_text="Could not retry pg-refused")
    await expect(alert).to_contain_text(
        "the deployment is destroying: only a failed or timed-out deployment can be retried"
    )
    await expect(alert).to_be_focused()
    await expect(page.locator("h1 .badge")).to_have_text("destroying")
    await expect(actions.get_by_role("button")).to_have_count(0)
    await screenshot(page, "22-retry-refused")


async def test_a_viewer_sees_no_actions_and_an_admin_sees_them_on_anyones_deployment(
    new_page: Any,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    deployment = await create_deployment(http, owner, await make_template(), "pg-watched")
    await wait_status(http, owner, deployment["id"], S.QUEUED)
    # The owner is made a viewer: the deployment stays theirs to look at, not to operate.
    demoted = await http.patch(
        f"/api/users/{owner.id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert demoted.status_code == 200, demoted.text

    viewer_page = await new_page()
    await sign_in(viewer_page, owner)
    await viewer_page.goto(f"/deployments/{deployment['id']}")
    await expect(viewer_page.locator(".live")).to_have_text("Live")
    await expect(viewer_page.locator("h1 .badge")).to_have_text("queued")
    await expect(viewer_page.locator(".operations button")).to_have_count(0)
    await expect(viewer_page.get_by_role("button", name="Cancel deployment")).to_have_count(0)
    await screenshot(viewer_page, "23-viewer-no-actions")

    admin_page = await new_page()
    await sign_in(admin_page, admin)
    await admin_page.goto(f"/deployments/{deployment['id']}")
    await expect(
        admin_page.get_by_role("group", name="Actions").get_by_role("button")
    ).to_have_text(["Cancel deployment"])
