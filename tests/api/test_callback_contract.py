"""The callback contract end to end: a real ansible-playbook run's events, sent by the real plugin
through the real API into history, arrive there whole: every key the plugin sends, with the value
it sent, bounded, and censored for no_log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.callback_events import event
from tests.tapped_playbook import (
    FAILING_STDERR_FIRST,
    FAILING_STDERR_LAST,
    FAILING_TASK,
    SECRET,
    run_playbook_into_api,
)
from tests.ui.support import create_deployment, send_events, wait_status
from vocabulary import callback_events as contract
from vocabulary.statuses import DeploymentStatus as S


@pytest.fixture
async def http(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        yield client


def _is_event(row: dict[str, Any]) -> bool:
    return "counter" in row["details"]


def _one(events: list[dict[str, Any]], name: str, task: str) -> dict[str, Any]:
    found = [e for e in events if e["event"] == name and e["task"] == task]
    assert len(found) == 1, (name, task, events)
    return found[0]


async def test_every_key_the_plugin_sends_arrives_in_history(
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-contract")
    await wait_status(http, operator, deployment["id"], S.QUEUED)

    run = await run_playbook_into_api(
        settings.public_url, settings.callback_secret, deployment, tmp_path
    )
    assert run.returncode == 2, run.output  # a task failed
    assert "provisio_callback" not in run.output  # the plugin warned of nothing
    assert run.requests and all(r.signature_ok and r.status == 200 for r in run.requests)
    sent = run.sent_events
    assert [e["counter"] for e in sent] == list(range(1, len(sent) + 1))

    final = await wait_status(http, operator, deployment["id"], S.FAILED)
    history = (
        await http.get(f"/api/deployments/{final['id']}/history", headers=operator.headers)
    ).json()
    stored = {row["details"]["counter"]: row["details"] for row in history if _is_event(row)}

    # Whole: each event as the plugin sent it, every key and every value.
    assert stored == {event["counter"]: event for event in sent}
    # The run used every key of the contract (no host was unreachable), and no other.
    data_keys = {key for event in sent for key in event["data"]}
    assert data_keys == contract.DATA_KEYS - {"unreachable"}
    assert all(set(event) == set(contract.EVENT_KEYS) for event in sent)

    failed = _one(sent, contract.RUNNER_ON_FAILED, FAILING_TASK)["data"]
    assert failed["msg"] == "non-zero return code" and failed["rc"] == 1
    stderr = failed["stderr"]
    assert len(stderr) <= contract.MAX_TEXT_CHARS  # bounded: the command wrote about 4,700
    assert stderr.startswith(FAILING_STDERR_FIRST) and stderr.endswith(FAILING_STDERR_LAST)
    assert history[-1]["message"] == (
        f"Deployment failed: task '{FAILING_TASK}' failed on localhost: non-zero return code"
    )

    secret = _one(sent, contract.RUNNER_ON_FAILED, "Read a secret")["data"]
    assert secret["censored"] == contract.CENSORED and secret["ignore_errors"] is True
    assert not {"msg", "stderr", "rc"} & set(secret)
    assert SECRET not in json.dumps(history)

    skipped = _one(sent, contract.RUNNER_ON_SKIPPED, "Only on LVM hosts")["data"]
    assert skipped["skipped"] is True and skipped["skip_reason"]
    handler = _one(sent, contract.TASK_START, "Reload the service")["data"]
    assert handler["handler"] is True


async def test_the_api_keeps_only_the_contract_and_bounds_every_text(
    http: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    settings: Settings,
) -> None:
    """A sender that is not the plugin (or a plugin of another version) gets the same shape."""
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-strict")
    await wait_status(http, operator, deployment["id"], S.QUEUED)
    long_text = "E" * 3 * contract.MAX_TEXT_CHARS
    unknown = event(1, contract.RUNNER_ON_FAILED, "web-1", long_text, msg=long_text, password="x")
    unknown["extra"] = "dropped too"
    await send_events(http, settings, deployment, [unknown])

    history = (
        await http.get(f"/api/deployments/{deployment['id']}/history", headers=operator.headers)
    ).json()
    stored = next(row["details"] for row in history if _is_event(row))
    assert set(stored) == set(contract.EVENT_KEYS)
    assert set(stored["data"]) == {"msg"}
    assert stored["data"]["msg"] == contract.bound_text(long_text)
    assert len(stored["task"]) == len(stored["data"]["msg"]) <= contract.MAX_TEXT_CHARS
