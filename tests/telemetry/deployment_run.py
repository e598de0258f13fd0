"""One deployment driven through the real API and worker to `succeeded`: launched over HTTP,
its run reported by signed callbacks sent to the URL the runner was given (as the plugin does)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from domain.callback_tokens import callback_token
from settings import Settings
from tests.callback_events import event, signed
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.statuses import DeploymentStatus


def run_events() -> list[dict[str, Any]]:
    """A successful playbook's events, stamped now (the callback lag is measured from them)."""
    now = datetime.now(UTC).isoformat()
    events = [
        event(1, "playbook_on_start"),
        event(2, "runner_on_ok", "web-1", "Make filesystem", changed=True),
        event(3, "playbook_on_stats", stats={"web-1": {"ok": 1, "changed": 1, "failures": 0}}),
    ]
    return [{**e, "timestamp": now} for e in events]


async def launch(api: httpx.AsyncClient, headers: dict[str, str], template_id: int) -> Any:
    created = await api.post(
        "/api/deployments",
        json={"template_id": template_id, "deployment_name": "pg-observed"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


async def wait_status(
    api: httpx.AsyncClient, deployment: Any, headers: dict[str, str], status: DeploymentStatus
) -> None:
    async def reached() -> bool:
        r = await api.get(f"/api/deployments/{deployment['id']}", headers=headers)
        return bool(r.json()["status"] == status)

    await wait_for(reached)


async def report_run(
    api: httpx.AsyncClient, runner: RecordingRunnerDouble, settings: Settings, deployment: Any
) -> str:
    """Send the run's events to the callback URL its trigger carried; that URL's path and query."""
    await wait_for(lambda: _triggered(runner, deployment["id"]))
    url = urlsplit(runner.triggers[-1].callback_url)
    target = f"{url.path}?{url.query}"
    token = callback_token(settings.callback_secret, deployment["id"], deployment["workflow_id"])
    body, signed_headers = signed(token, {"events": run_events()})
    response = await api.post(target, content=body, headers=signed_headers)
    assert response.json() == {"accepted": 3, "stored": 3}, response.text
    return target


async def _triggered(runner: RecordingRunnerDouble, deployment_id: int) -> bool:
    return bool(runner.actions(deployment_id))
