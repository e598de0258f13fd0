"""`provisio deployments resize` as a person runs it: a subprocess speaking HTTP to the real API,
with the real worker (runner double), Temporal and PostgreSQL behind it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from temporalio.client import Client

from tests.api.test_resize_api import bounded_template
from tests.doubles import RecordingRunnerDouble
from tests.test_cli_deployments import Provisio, provisio, token_of
from tests.workflows.test_deploy_flow import wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, succeeded, triggered
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow

__all__ = ["provisio"]  # the fixture, used by name


async def test_resize_grows_and_names_the_disk_it_refuses(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    token = token_of(owner)
    done = await succeeded(api, client, owner, await bounded_template(api, admin))
    deployment = str(done["id"])
    shown = await provisio("deployments", "show", deployment, token=token)
    assert shown.code == 0, shown.err
    assert re.search(r"^  you may +destroy, resize, set$", shown.out, re.M), shown.out

    shrink = await provisio(
        "deployments", "resize", deployment, "--disk", "/data/db=20", "--disk", "/data/wal=4",
        token=token,
    )  # fmt: skip
    assert shrink.code == 1
    assert "--disk /data/wal (size_gb): the disk /data/wal is 5 GB; 4 GB would shrink it" in (
        shrink.err
    )
    over = await provisio(
        "deployments", "resize", deployment, "--disk", "/data/db=50", "--disk", "/data/wal=11",
        token=token,
    )  # fmt: skip
    assert over.code == 1 and "this template allows 60 GB in all" in over.err
    typed = await provisio("deployments", "resize", deployment, "--disk", "/data/db=20:xfs")
    assert typed.code == 2 and "a resize changes sizes only" in typed.err
    nothing = await provisio("deployments", "resize", deployment, token=token)
    assert nothing.code == 2 and "--disk" in nothing.err
    assert len(runner.triggers) == 1

    grow = await provisio(
        "deployments", "resize", deployment, "--disk", "/data/db=30", "--json", token=token
    )
    assert grow.code == 0, grow.err
    assert grow.json()["status"] == "updating"
    busy = await provisio("deployments", "resize", deployment, "--disk", "/data/db=40", token=token)
    assert busy.code == 1
    assert "only a succeeded deployment can be resized or reconfigured" in busy.err

    await triggered(runner, 2)
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    grown = await wait_status(api, owner, done["id"], "succeeded")
    assert {d["mount_point"]: d["size_gb"] for d in grown["disk_allocations"]} == {
        "/data/db": 30,
        "/data/wal": 5,
    }
