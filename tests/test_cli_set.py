"""`provisio deployments set` as a person runs it: a subprocess speaking HTTP to the real API,
with the real worker (runner double), Temporal and PostgreSQL behind it."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.client import Client

from tests.api.test_reconfigure_api import configurable_template
from tests.doubles import RecordingRunnerDouble
from tests.test_cli_deployments import Provisio, provisio, token_of
from tests.workflows.test_deploy_flow import wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow

__all__ = ["provisio"]  # the fixture, used by name


async def test_set_changes_values_and_names_the_value_it_refuses(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    token = token_of(owner)
    done = await succeeded(api, client, owner, await configurable_template(api, admin))
    deployment = str(done["id"])

    refused = await provisio(
        "deployments", "set", deployment, "port=80", "log_level=trace", token=token
    )
    assert refused.code == 1
    assert "configuration.port" in refused.err and "configuration.log_level" in refused.err
    unchanged = await provisio("deployments", "set", deployment, "port=5432", token=token)
    assert unchanged.code == 1 and "nothing to change" in unchanged.err
    malformed = await provisio("deployments", "set", deployment, "port", token=token)
    assert malformed.code == 2 and "expected KEY=VALUE" in malformed.err
    assert len(runner.triggers) == 1

    changed = await provisio(
        "deployments", "set", deployment, "port=6543", "log_level=debug", "--json", token=token
    )
    assert changed.code == 0, changed.err
    assert changed.json()["status"] == "updating"
    await triggered(runner, 2)
    configuration = runner.triggers[1].variables["provisio_deployment"]["configuration"]
    assert (configuration["port"], configuration["log_level"]) == (6543, "debug")
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    await wait_status(api, owner, done["id"], "succeeded")
    shown = await provisio("deployments", "show", deployment, "--history", token=token)
    assert shown.code == 0, shown.err
    assert "  port = 6543" in shown.out
    assert "Configuration change requested: log_level 'info'→'debug', port 5432→6543" in shown.out
