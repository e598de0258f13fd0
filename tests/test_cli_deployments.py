"""`provisio login | logout | deployments …` as a person runs them: subprocesses speaking HTTP
to the real API (uvicorn), with the real worker, Temporal and PostgreSQL behind it. The
pipeline's part is played by the test (a runner double; the final callbacks as signals)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from temporalio.client import Client

from cli_client import next_page
from cli_deployments import HISTORY_PAGE
from db.models import DeploymentHistory
from db.session import SessionMaker
from settings import PROJECT_ROOT
from tests.conftest import bound_socket, wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.contracts import PipelineFinished
from vocabulary.runs import RunAction
from workflows.deploy import DeployWorkflow

STATS = {"web-1": {"ok": 3, "changed": 1, "failures": 0, "unreachable": 0}}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Provisio:
    """Runs `provisio …` with its own HOME (where `login` keeps tokens) against `live_api`."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home

    def env(self, token: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIO_")}
        env.update(HOME=str(self.home), PROVISIO_URL=self.url)
        if token is not None:
            env["PROVISIO_TOKEN"] = token
        return env

    async def start(self, *args: str, token: str | None = None) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=PROJECT_ROOT,
            env=self.env(token),
        )

    async def __call__(self, *args: str, token: str | None = None, stdin: str = "") -> Run:
        process = await self.start(*args, token=token)
        return await finish(process, stdin)


async def finish(
    process: asyncio.subprocess.Process, stdin: str = "", timeout_s: float = 60
) -> Run:
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout_s)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture
def provisio(live_api: str, tmp_path: Path) -> Provisio:
    return Provisio(live_api, tmp_path / "home")


def token_of(account: Any) -> str:
    return str(account.headers["Authorization"].removeprefix("Bearer "))


def launched_id(run: Run) -> int:
    found = re.search(r"\(#(\d+)\)", run.out)
    assert found, run.out
    return int(found[1])


async def wait_status(api: httpx.AsyncClient, account: Any, deployment_id: int, status: str) -> Any:
    async def reached() -> Any:
        body = (await api.get(f"/api/deployments/{deployment_id}", headers=account.headers)).json()
        return body if body["status"] == status else None

    return await wait_for(reached)


async def finish_run(client: Client, workflow_id: str, run: int) -> None:
    """The run's final callback, as the callback endpoint signals it."""
    handle = client.get_workflow_handle_for(DeployWorkflow.run, workflow_id)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=run))


async def test_login_keeps_a_private_token_that_list_show_and_launch_use(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()

    wrong = await provisio(
        "login", "--username", operator.username, "--password-stdin", stdin="nope\n"
    )
    assert wrong.code == 1
    assert "sign-in refused: Incorrect username or password" in wrong.err
    login = await provisio(
        "login", "--username", operator.username, "--password-stdin", stdin=operator.password
    )
    assert login.code == 0, login.err
    assert f"signed in to {provisio.url} as {operator.username}" in login.out
    tokens = provisio.home / ".config" / "provisio" / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.parent.stat().st_mode) == 0o700
    assert set(json.loads(tokens.read_text())) == {provisio.url}

    empty = await provisio("deployments", "list")
    assert (empty.code, empty.out.strip()) == (0, "no deployments yet")

    launch = await provisio(
        "deployments", "launch", "--template", str(template_id), "--name", "pg-cli",
        "--set", "max_connections=250", "--set", "listen=0.0.0.0",
        "--disk", "/data/pgdata=40", "--disk", "/data/pgwal=8:ext4",
    )  # fmt: skip
    assert launch.code == 0, launch.err
    assert re.match(r"launched: pg-cli \(#\d+\) is pending", launch.out)
    deployment_id = launched_id(launch)
    assert f"provisio deployments watch {deployment_id}" in launch.out
    await wait_status(api, operator, deployment_id, "queued")

    shown = await provisio("deployments", "show", str(deployment_id), "--json")
    assert shown.code == 0, shown.err
    detail = shown.json()
    assert detail["configuration"]["max_connections"] == 250  # a JSON number, not "250"
    assert detail["configuration"]["listen"] == "0.0.0.0"
    disks = {
        d["mount_point"]: (d["size_gb"], d["filesystem_type"]) for d in detail["disk_allocations"]
    }
    assert disks == {"/data/pgdata": (40, "ext4"), "/data/pgwal": (8, "ext4")}
    assert detail["allowed_operations"] == ["cancel"]

    human = await provisio("deployments", "show", str(deployment_id), "--history")
    assert human.code == 0, human.err
    assert human.out.startswith(f"pg-cli (#{deployment_id})\n")
    assert re.search(r"^  status +queued$", human.out, re.MULTILINE)
    assert re.search(r"^  you may +cancel$", human.out, re.MULTILINE)
    assert re.search(r"^  /data/pgdata +40 GB +ext4 +vg_data/lv_pgdata +planned ", human.out, re.M)
    assert "  max_connections = 250" in human.out
    assert re.search(r"created +Deployment created", human.out)

    listed = await provisio("deployments", "list", "--status", "queued")
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "TEMPLATE", "OWNER", "CREATED"]
    assert row.split()[:5] == [
        str(deployment_id), "pg-cli", "queued", "postgres-small", operator.username,
    ]  # fmt: skip
    none = await provisio("deployments", "list", "--status", "cancelled")
    assert none.out.strip() == "no deployments match"
    as_json = await provisio("deployments", "list", "--json")
    assert [item["id"] for item in as_json.json()["items"]] == [deployment_id]

    # The API's field errors, said in the CLI's terms.
    bad = await provisio(
        "deployments", "launch", "--template", str(template_id), "--name", "pg-bad",
        "--disk", "/data/pgdata=0",
    )  # fmt: skip
    assert bad.code == 1
    assert "--disk /data/pgdata (size_gb): Input should be greater than or equal to 1" in bad.err
    taken = await provisio(
        "deployments", "launch", "--template", str(template_id), "--name", "pg-cli"
    )
    assert taken.code == 1 and taken.err.startswith("provisio: refused: ")

    logout = await provisio("logout")
    assert logout.code == 0 and json.loads(tokens.read_text()) == {}
    signed_out = await provisio("deployments", "list")
    assert signed_out.code == 1 and "provisio login" in signed_out.err


async def test_cancel_watch_until_cancelled_and_a_refused_operation_exits_1_with_the_reason(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    token = token_of(operator)
    template_id = await make_template()
    launch = await provisio(
        "deployments", "launch", "--template", str(template_id), "--name", "pg-one", token=token
    )
    deployment_id = launched_id(launch)
    created = await wait_status(api, operator, deployment_id, "queued")

    # Follow it from before the cancel to its end.
    watch = await provisio.start("deployments", "watch", str(deployment_id), token=token)
    assert watch.stdout is not None
    first = (await asyncio.wait_for(watch.stdout.readline(), 30)).decode()
    assert first == f"pg-one (#{deployment_id}) is queued\n"
    cancel = await provisio("deployments", "cancel", str(deployment_id), token=token)
    assert cancel.code == 0, cancel.err
    assert cancel.out.startswith(f"cancel requested: pg-one (#{deployment_id}) is cancelling\n")

    refused = await provisio("deployments", "retry", str(deployment_id), token=token)
    assert refused.code == 1
    assert refused.err.strip() == (
        "provisio: refused: the deployment is cancelling: only a failed or timed-out deployment"
        " can be retried"
    )
    refused_json = await provisio(
        "deployments", "destroy", str(deployment_id), "--json", token=token
    )
    assert refused_json.code == 1
    assert json.loads(refused_json.err)["status"] == 409

    async def teardown_started() -> bool:
        return (2, RunAction.DESTROY) in runner.actions(deployment_id)

    await wait_for(teardown_started)
    await finish_run(client, created["workflow_id"], run=2)
    watched = await finish(watch)
    assert watched.code == 0, watched.err
    lines = watched.out.splitlines()
    assert any(re.search(r"cancelling +Cancel requested by ", line) for line in lines)
    assert any(re.search(r"cancelling +Teardown triggered", line) for line in lines)
    assert "status: cancelling" in lines and "status: cancelled" in lines
    assert lines[-1] == f"ended: pg-one (#{deployment_id}) is cancelled"

    # Watching an ended deployment ends at once; --json prints one object per line.
    again = await provisio("deployments", "watch", str(deployment_id), "--json", token=token)
    assert again.code == 0, again.err
    events = [json.loads(line) for line in again.out.splitlines()]
    assert [e["event"] for e in events] == ["status", "end"]
    assert events[-1]["status"] == "cancelled"
    late = await provisio("deployments", "cancel", str(deployment_id), token=token)
    assert late.code == 1 and "refused: the deployment is cancelled" in late.err


async def test_destroy_a_succeeded_deployment_with_json_output_and_watch(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    token = token_of(operator)
    launch = await provisio(
        "deployments", "launch", "--template", str(await make_template()), "--name", "pg-gone",
        "--json", token=token,
    )  # fmt: skip
    assert launch.code == 0, launch.err
    deployment_id = launch.json()["id"]
    created = await wait_status(api, operator, deployment_id, "queued")
    await finish_run(client, created["workflow_id"], run=1)
    await wait_status(api, operator, deployment_id, "succeeded")

    destroy = await provisio.start(
        "deployments", "destroy", str(deployment_id), "--json", "--watch", token=token
    )

    async def teardown_started() -> bool:
        return (2, RunAction.DESTROY) in runner.actions(deployment_id)

    await wait_for(teardown_started)
    await finish_run(client, created["workflow_id"], run=2)
    done = await finish(destroy)
    assert done.code == 0, done.err
    events = [json.loads(line) for line in done.out.splitlines()]
    assert events[0]["event"] == "accepted"
    assert events[0]["deployment"]["status"] == "destroying"
    assert events[0]["deployment"]["allowed_operations"] == []
    assert (events[-2]["event"], events[-2]["status"]) == ("status", "destroyed")
    assert events[-1] == {"event": "end", "status": "destroyed"}
    rows = [e["row"] for e in events if e["event"] == "history"]
    assert rows and all(row["status"] in ("destroying", "destroyed") for row in rows)

    shown = await provisio("deployments", "show", str(deployment_id), "--json", token=token)
    assert {d["state"] for d in shown.json()["disk_allocations"]} == {"released"}


async def test_refusals_and_mistakes_say_what_to_do(
    provisio: Provisio,
    api: httpx.AsyncClient,
    make_user: Any,
    make_template: Any,
) -> None:
    viewer = await make_user("viewer")
    template_id = await make_template()

    bad_token = await provisio("deployments", "list", token="not-a-token")
    assert bad_token.code == 1
    assert "sign in again (provisio login)" in bad_token.err
    no_token = await provisio("deployments", "show", "1")
    assert no_token.code == 1 and "provisio login" in no_token.err

    forbidden = await provisio(
        "deployments", "launch", "--template", str(template_id), "--name", "pg-x",
        token=token_of(viewer),
    )  # fmt: skip
    assert forbidden.code == 1 and forbidden.err.startswith("provisio: not allowed: ")
    missing = await provisio("deployments", "show", "987654", token=token_of(viewer))
    assert missing.code == 1
    assert "deployment not found (it does not exist, or it is not yours)" in missing.err

    with bound_socket() as refusing:  # bound, not listening: refused, and no one else's
        nowhere = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        unreachable = await provisio("deployments", "list", "--url", nowhere, token="t")
    assert unreachable.code == 1
    assert f"cannot reach the Provisio API at {nowhere}" in unreachable.err

    usage = await provisio("deployments", "show", "seven", token="t")
    assert usage.code == 2 and "not a number" in usage.err
    setting = await provisio(
        "deployments", "launch", "--template", "1", "--name", "x", "--set", "novalue", token="t"
    )
    assert setting.code == 2 and "expected KEY=VALUE" in setting.err


async def test_show_and_watch_read_a_long_history_page_after_page(
    provisio: Provisio,
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """More rows than two of the API's history pages: `show --history` prints every one, and
    `watch` starts after the last (none of them is news)."""
    operator = await make_user("operator")
    token = token_of(operator)
    launch = await provisio(
        "deployments", "launch", "--template", str(await make_template()), "--name", "pg-long",
        "--json", token=token,
    )  # fmt: skip
    deployment_id = launch.json()["id"]
    created = await wait_status(api, operator, deployment_id, "queued")
    await finish_run(client, created["workflow_id"], run=1)
    await wait_status(api, operator, deployment_id, "succeeded")
    rows = [
        {
            "deployment_id": deployment_id,
            "event_key": f"test:{n}",
            "status": "succeeded",
            "message": f"note {n}",
        }
        for n in range(2 * HISTORY_PAGE + 50)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(insert(DeploymentHistory), rows)
        stored = await session.scalars(
            select(DeploymentHistory.id)
            .where(DeploymentHistory.deployment_id == deployment_id)
            .order_by(DeploymentHistory.id)
        )
        ids = list(stored)

    shown = await provisio(
        "deployments", "show", str(deployment_id), "--history", "--json", token=token
    )
    assert shown.code == 0, shown.err
    assert [row["id"] for row in shown.json()["history"]] == ids

    watched = await provisio("deployments", "watch", str(deployment_id), "--json", token=token)
    assert watched.code == 0, watched.err
    events = [json.loads(line)["event"] for line in watched.out.splitlines()]
    assert events == ["status", "end"]


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ('</api/deployments/7/history?after=9&limit=2>; rel="next"', True),
        ('<https://elsewhere.example/api/x>; rel="next"', False),  # the token stays home
        ('<//elsewhere.example/api/x>; rel="next"', False),
        ('</api/deployments/7/history?after=1&limit=2>; rel="next"', False),  # this page again
        ('</api/deployments/7/history?after=9&limit=2>; rel="prev"', False),
        (None, False),
    ],
)
def test_the_client_follows_only_a_next_page_on_its_own_server(
    link: str | None, followed: bool
) -> None:
    request = httpx.Request("GET", "http://api.test/api/deployments/7/history?after=1&limit=2")
    headers = {"Link": link} if link else {}
    response = httpx.Response(200, headers=headers, json=[], request=request)
    expected = "/api/deployments/7/history?after=9&limit=2" if followed else None
    assert next_page(response) == expected
