"""Endings the signal tests do not reach, run through the API and recorded as replay fixtures
(`PROVISIO_RECORD_HISTORIES=1`, like tests/workflows/test_deploy_flow.py): a deploy ended by a
status check, a run reconciled from the runner's status after its final callback was lost, and a
deployment failed once the trigger's retries ran out."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from pipeline.runner import PipelineRequest
from tests.conftest import HISTORIES, wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.contracts import PipelineStarted
from vocabulary.runs import RunRef, RunState
from workflows.deploy import DeployWorkflow


async def launch(api: httpx.AsyncClient, account: Any, template_id: int) -> dict[str, Any]:
    body = {"template_id": template_id, "deployment_name": "pg-one"}
    response = await api.post("/api/deployments", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def wait_status(
    api: httpx.AsyncClient, account: Any, deployment_id: int, status: str, timeout_s: float = 30
) -> dict[str, Any]:
    async def reached() -> Any:
        body = (await api.get(f"/api/deployments/{deployment_id}", headers=account.headers)).json()
        return body if body["status"] == status else None

    return await wait_for(reached, timeout_s=timeout_s)  # type: ignore[no-any-return]


async def history(api: httpx.AsyncClient, account: Any, deployment_id: int) -> list[Any]:
    response = await api.get(f"/api/deployments/{deployment_id}/history", headers=account.headers)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def save_history(client: Client, workflow_id: str, name: str) -> None:
    """With PROVISIO_RECORD_HISTORIES=1, refresh the replay test's fixture `name`."""
    if os.environ.get("PROVISIO_RECORD_HISTORIES") == "1":
        recorded = await client.get_workflow_handle(workflow_id).fetch_history()
        (HISTORIES / f"{name}.json").write_text(recorded.to_json())


async def test_a_run_that_fails_before_reporting_ends_by_a_status_check(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    runner.state, runner.reason = RunState.FAILED, "build #7 failed: no agent"
    operator = await make_user("operator")
    created = await launch(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "failed")
    rows = await history(api, operator, created["id"])
    assert [r["status"] for r in rows] == ["created", "provisioning", "queued", "failed"]
    assert rows[-1]["message"] == "Pipeline failed before reporting: build #7 failed: no agent"
    assert rows[-1]["details"]["reason"] == "build #7 failed: no agent"
    assert rows[-1]["details"]["job_id"] == f"double-{created['id']}"
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    assert await handle.query(DeployWorkflow.status) == "failed"
    await save_history(client, created["workflow_id"], "status_check_failed")


async def test_a_run_whose_final_callback_is_lost_is_reconciled_from_the_runner(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    """The start arrives by callback, the end never does: the runner's word settles it."""
    runner.state = RunState.RUNNING
    operator = await make_user("operator")
    created = await launch(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    await handle.signal(
        DeployWorkflow.pipeline_started, PipelineStarted({"playbook": "deploy.yml"})
    )
    await wait_status(api, operator, created["id"], "running")
    stats: dict[str, object] = {"web-1": {"ok": 3, "changed": 1, "failures": 0}}
    runner.stats, runner.state = stats, RunState.SUCCEEDED
    await wait_status(api, operator, created["id"], "succeeded")
    rows = await history(api, operator, created["id"])
    assert [r["status"] for r in rows] == [
        "created",
        "provisioning",
        "queued",
        "running",
        "succeeded",
    ]
    assert rows[-1]["details"]["stats"] == stats
    assert runner.cancelled == []
    await save_history(client, created["workflow_id"], "reconciled")


async def test_a_trigger_that_keeps_failing_fails_the_deployment_once_its_retries_run_out(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    def refuse(request: PipelineRequest) -> RunRef:
        attempts.append(request.run)
        raise ConnectionError("Jenkins answered 503")

    monkeypatch.setattr(runner, "trigger", refuse)
    operator = await make_user("operator")
    created = await launch(api, operator, await make_template())
    # Five attempts, a second apart and then doubling: about 15 s.
    await wait_status(api, operator, created["id"], "failed", timeout_s=90)
    assert attempts == [1] * 5
    rows = await history(api, operator, created["id"])
    assert [r["status"] for r in rows] == ["created", "provisioning", "failed"]
    assert "Jenkins answered 503" in rows[-1]["message"], rows[-1]
    assert runner.triggers == []
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    assert await handle.query(DeployWorkflow.status) == "failed"
    await save_history(client, created["workflow_id"], "trigger_failed")
