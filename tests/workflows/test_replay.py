"""Recorded DeployWorkflow histories must replay against today's code: a change that would break
running workflows fails here. Refresh the fixtures deliberately (and keep the old ones) with
`PROVISIO_RECORD_HISTORIES=1 pytest tests/workflows/test_deploy_flow.py
tests/workflows/test_lifecycle.py tests/workflows/test_more_histories.py`. How a change is
versioned so that these keep replaying is in docs/architecture.md ("Changing the workflow")."""

from __future__ import annotations

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import HISTORIES
from workflows.deploy import DeployWorkflow


async def test_recorded_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    names = {f.stem for f in files}
    provisioning = {"succeeded", "failed", "timed_out", "rejected"}
    # Ended by the runner's word: a status check, a lost final callback, a trigger given up on.
    runner_endings = {"status_check_failed", "reconciled", "trigger_failed"}
    operations = {
        "cancelled", "destroyed", "retried", "retention_ended", "continued_as_new", "resized",
    }  # fmt: skip
    assert provisioning | runner_endings | operations <= names, names
    histories = [WorkflowHistory.from_json(f.stem, f.read_text()) for f in files]
    replayer = Replayer(workflows=[DeployWorkflow])
    failures = {}
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures[history.workflow_id] = str(result.replay_failure)
    assert failures == {}
