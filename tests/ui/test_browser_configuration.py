"""Changing a deployment's configuration from its page, in headless Chromium, against uvicorn,
the real worker, Temporal and PostgreSQL (the runner is a double; each run's callback events are
sent by the test): the form built from the template's overrides and filled with the values now,
a value the template forbids refused next to its field, a secret never shown and changed only
when typed, and the change followed live to the new values."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.api.test_reconfigure_api import configurable_template
from tests.doubles import RecordingRunnerDouble
from tests.ui.support import create_deployment, send_events, wait_status
from tests.ui.test_browser_operations import run_events
from vocabulary.statuses import DeploymentStatus as S

pytest.importorskip("playwright", reason="install it with: .venv/bin/pip install playwright")
from playwright.async_api import Page, expect  # noqa: E402

from tests.ui.pages import sign_in, step  # noqa: E402


async def test_the_owner_changes_a_value_and_a_secret_and_sees_them_applied(
    page: Page,
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    runner: RecordingRunnerDouble,
    settings: Settings,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await configurable_template(http, admin)
    deployment = await create_deployment(http, operator, template_id, "pg-configured")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    await send_events(http, settings, deployment, run_events())
    await wait_status(http, operator, deployment["id"], S.SUCCEEDED)

    await sign_in(page, operator)
    await page.goto(f"/deployments/{deployment['id']}")
    await expect(page.locator(".live")).to_have_text(re.compile("Live|Settled|Final"))
    form = page.get_by_role("form", name="Change configuration")
    port = form.get_by_label("port")
    await expect(port).to_have_value("5432")
    password = form.get_by_label("admin_password")
    await expect(password).to_have_attribute("type", "password")
    await expect(password).to_have_value("")  # the secret is never shown
    assert "first-password-1" not in await page.content()

    # Nothing typed: nothing to send.
    await form.get_by_role("button", name="Apply").click()
    await expect(form.get_by_role("alert")).to_contain_text("Nothing to change")
    # Below the schema's minimum: the API's refusal lands next to the field.
    await port.fill("1000")
    await form.get_by_role("button", name="Apply").click()
    await expect(port).to_have_attribute("aria-invalid", "true")
    await expect(form.locator(f"#change-config-{deployment['id']}-port-error")).to_contain_text(
        "1024"
    )
    assert len(runner.triggers) == 1

    await port.fill("6432")
    await password.fill("second-password-2")
    await form.get_by_role("button", name="Apply").click()
    accepted = page.get_by_role("status").filter(has_text="Configuration change requested")
    await expect(accepted).to_contain_text("admin_password, port")
    await expect(page.locator("h1 .badge")).to_have_text("updating")
    await expect(form).to_be_hidden()  # no second change while one runs
    configuration = runner.triggers[1].variables["provisio_deployment"]["configuration"]
    assert configuration["port"] == 6432
    assert configuration["admin_password"] == "second-password-2"
    assert configuration["replica_key"] == "rk-first"  # left empty: unchanged

    await send_events(http, settings, deployment, run_events(), run=2)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    await expect(step(page, "Change requested")).to_contain_text(
        f"Configuration change requested: admin_password ********→********, port 5432→6432 by "
        f"{operator.username}"
    )
    await expect(step(page, "Changed")).to_contain_text(
        "Configuration change succeeded: admin_password, port set"
    )
    await expect(form.get_by_label("port")).to_have_value("6432")
