"""PATCH /api/deployments/{id} with `configuration`: reconfiguring a succeeded deployment over
HTTP, with the real API, PostgreSQL, Temporal server and worker (the runner double): values
within the template's overrides schema and outside it, the run given the new values, history's
old → new with secrets masked, and a resize and a reconfiguration in one run."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.client import Client

from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import history, wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow

OVERRIDES = {
    "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
    "log_level": {"enum": ["info", "debug"]},
    "admin_password": {"type": "string", "minLength": 12},
    "replica_key": {"type": "string", "writeOnly": True},
}


async def configurable_template(api: httpx.AsyncClient, admin: Any) -> int:
    """Defaults port 5432, log_level info, a password and a replica key (a secret the schema
    declares, which its name does not give away); /data/db 10 GB, at most 50."""
    body = {
        "name": "configurable-db",
        "service_type": "postgresql",
        "configuration": {
            "port": 5432,
            "log_level": "info",
            "admin_password": "first-password-1",
            "replica_key": "rk-first",
            "provisio": {"overrides": OVERRIDES},
        },
        "disk_allocations": [
            {
                "disk_type": "ssd",
                "size_gb": 10,
                "mount_point": "/data/db",
                "volume_group": "vg_data",
                "logical_volume": "lv_db",
                "filesystem_type": "ext4",
                "allocation_params": {"min_size_gb": 5, "max_size_gb": 50},
            }
        ],
    }
    response = await api.post("/api/templates", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def patch(
    api: httpx.AsyncClient, account: Any, deployment_id: int, body: dict[str, Any]
) -> httpx.Response:
    return await api.patch(f"/api/deployments/{deployment_id}", json=body, headers=account.headers)


def run_configuration(runner: RecordingRunnerDouble, index: int) -> dict[str, Any]:
    return dict(runner.triggers[index].variables["provisio_deployment"]["configuration"])


async def test_values_outside_the_overrides_are_refused_and_change_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    other, viewer = await make_user("operator"), await make_user("viewer")
    done = await succeeded(api, client, owner, await configurable_template(api, admin))

    invalid = await patch(
        api, owner, done["id"], {"configuration": {"port": 80, "log_level": "trace", "x": 1}}
    )
    assert invalid.status_code == 422, invalid.text
    errors = {tuple(e["loc"]): e["type"] for e in invalid.json()["detail"]}
    assert errors == {
        ("body", "configuration", "log_level"): "enum",
        ("body", "configuration", "port"): "minimum",
        ("body", "configuration", "x"): "key",
    }
    reserved = await patch(api, owner, done["id"], {"configuration": {"provisio": "x"}})
    assert reserved.status_code == 422, reserved.text
    # Both parts are checked together: a bad size and a bad value, each named.
    both = await patch(
        api,
        owner,
        done["id"],
        {
            "configuration": {"port": 99999},
            "disk_allocations": [{"mount_point": "/data/db", "size_gb": 4}],
        },
    )
    assert both.status_code == 422, both.text
    assert {tuple(e["loc"]) for e in both.json()["detail"]} == {
        ("body", "disk_allocations", 0, "size_gb"),
        ("body", "configuration", "port"),
    }
    same = await patch(api, owner, done["id"], {"configuration": {"port": 5432}})
    assert same.status_code == 422, same.text
    assert same.json()["detail"][0]["type"] == "unchanged"
    nothing = await patch(api, owner, done["id"], {})
    assert nothing.status_code == 422, nothing.text
    assert (
        await patch(api, other, done["id"], {"configuration": {"port": 6000}})
    ).status_code == 404
    assert (
        await patch(api, viewer, done["id"], {"configuration": {"port": 6000}})
    ).status_code == 403

    detail = (await api.get(f"/api/deployments/{done['id']}", headers=owner.headers)).json()
    assert detail["status"] == "succeeded"
    assert detail["configuration"] == done["configuration"]
    rows = await history(api, owner, done["id"])
    assert not [r for r in rows if "requested" in r["message"]]
    assert len(runner.triggers) == 1


async def test_a_reconfiguration_runs_the_playbook_with_the_new_values_and_history_masks_secrets(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await configurable_template(api, admin))
    assert done["configuration"] == {
        "port": 5432,
        "log_level": "info",
        "admin_password": "********",
        "replica_key": "********",
    }

    asked = {"port": 6432, "admin_password": "second-password-2", "replica_key": "rk-second"}
    accepted = await patch(api, owner, done["id"], {"configuration": asked})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "updating"
    assert accepted.json()["configuration"]["port"] == 5432  # taken when a run applied it

    await triggered(runner, 2)
    assert run_configuration(runner, 1) == {"port": 6432, "log_level": "info", **asked}
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    applied = await wait_status(api, owner, done["id"], "succeeded")
    # The API shows the secrets masked, whoever asks; only the runs see them.
    assert applied["configuration"] == {
        "port": 6432,
        "log_level": "info",
        "admin_password": "********",
        "replica_key": "********",
    }

    rows = await history(api, owner, done["id"])
    requested = next(r for r in rows if r["message"].startswith("Configuration change requested"))
    assert requested["message"] == (
        "Configuration change requested: admin_password ********→********, port 5432→6432, "
        f"replica_key ********→******** by {owner.username}"
    )
    assert requested["details"]["configuration"] == [
        {"key": "admin_password", "old": "********", "new": "********"},
        {"key": "port", "old": 5432, "new": 6432},
        {"key": "replica_key", "old": "********", "new": "********"},
    ]
    assert rows[-1]["message"] == (
        "Configuration change succeeded: admin_password, port, replica_key set"
    )
    # No secret value reaches history, in any row.
    text = str(rows)
    for secret in ("first-password-1", "second-password-2", "rk-first", "rk-second"):
        assert secret not in text


async def test_a_resize_and_a_reconfiguration_in_one_patch_are_one_run(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await configurable_template(api, admin))
    body = {
        "configuration": {"log_level": "debug"},
        "disk_allocations": [{"mount_point": "/data/db", "size_gb": 20}],
    }
    assert (await patch(api, owner, done["id"], body)).status_code == 202

    await triggered(runner, 2)
    variables = runner.triggers[1].variables
    assert variables["provisio_deployment"]["configuration"]["log_level"] == "debug"
    assert [d["size_gb"] for d in variables["provisio_disks"]] == [20]
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    changed = await wait_status(api, owner, done["id"], "succeeded")
    assert changed["configuration"]["log_level"] == "debug"
    assert [d["size_gb"] for d in changed["disk_allocations"]] == [20]
    assert len(runner.triggers) == 2
    messages = [r["message"] for r in await history(api, owner, done["id"])]
    assert (
        f"Resize and configuration change requested: /data/db 10→20 GB; log_level 'info'→'debug'"
        f" by {owner.username}"
    ) in messages
    assert (
        messages[-1] == "Resize and configuration change succeeded: /data/db 20 GB; log_level set"
    )


async def test_a_failed_reconfiguration_keeps_the_old_values_until_a_retry_applies_the_new(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await configurable_template(api, admin))
    assert (
        await patch(api, owner, done["id"], {"configuration": {"port": 7000}})
    ).status_code == 202
    await triggered(runner, 2)
    handle = handle_of(client, done)
    await handle.signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {"web-1": {"failures": 1}}, "task 'Configure' failed", run=2),
    )
    failed = await wait_status(api, owner, done["id"], "failed")
    assert failed["configuration"]["port"] == 5432  # no run applied 7000
    assert failed["retained_until"] is None  # it served until this change: kept
    rows = await history(api, owner, done["id"])
    assert rows[-1]["message"] == "Configuration change failed: task 'Configure' failed"

    retry = await api.post(f"/api/deployments/{done['id']}/retry", headers=owner.headers)
    assert retry.status_code == 202, retry.text
    await triggered(runner, 3)
    assert run_configuration(runner, 2)["port"] == 7000
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=3))
    retried = await wait_status(api, owner, done["id"], "succeeded")
    assert retried["configuration"]["port"] == 7000


async def test_a_refused_secret_is_not_repeated_in_the_answer(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await configurable_template(api, admin))
    refused = await patch(
        api, owner, done["id"], {"configuration": {"admin_password": "short-pw", "port": 1}}
    )
    assert refused.status_code == 422, refused.text
    assert "short-pw" not in refused.text
    errors = {e["loc"][-1]: e for e in refused.json()["detail"]}
    assert errors["admin_password"]["type"] == "minLength"
    assert "1 is less than the minimum of 1024" in errors["port"]["msg"]  # not a secret: said
