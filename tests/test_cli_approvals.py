"""`provisio deployments approve|reject` and the approval in `show`, as a person runs them: a
subprocess speaking HTTP to the real API, with the real worker (runner double), Temporal and
PostgreSQL behind it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from temporalio.client import Client

from tests.api.test_approvals_api import approval_template, planned
from tests.doubles import RecordingRunnerDouble
from tests.test_cli_deployments import Provisio, provisio, token_of
from tests.workflows.test_lifecycle import triggered
from vocabulary.runs import RunAction

__all__ = ["provisio"]  # the fixture, used by name


async def test_an_admin_approves_from_the_cli_after_reading_the_plan(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, approver = await make_user("admin"), await make_user("admin")
    operator = await make_user("operator")
    waiting = await planned(api, client, runner, operator, await approval_template(api, admin))
    deployment = str(waiting["id"])

    shown = await provisio("deployments", "show", deployment, token=token_of(operator))
    assert shown.code == 0, shown.err
    assert re.search(r"^  approval +pending$", shown.out, re.M), shown.out
    assert "plan (template pg-approved v1, on db-1)" in shown.out
    assert "  /data/pgdata  20 GB xfs  vg_data/lv_pgdata" in shown.out

    own = await provisio("deployments", "approve", deployment, token=token_of(operator))
    assert own.code == 1 and "not allowed" in own.err
    approved = await provisio(
        "deployments", "approve", deployment, "--comment", "go ahead", "--json",
        token=token_of(approver),
    )  # fmt: skip
    assert approved.code == 0, approved.err
    assert approved.json()["approval"]["comment"] == "go ahead"
    await triggered(runner, 2)
    assert runner.triggers[1].action == RunAction.DEPLOY
    again = await provisio("deployments", "reject", deployment, token=token_of(approver))
    assert again.code == 1 and "refused" in again.err
