"""Runs pinned to the worker host that started them: with two worker hosts on one task queue, a
run's status checks and stops reach only its own host, and a run whose host is gone fails the
deployment with that reason instead of waiting out its timeout."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
from temporalio.client import Client

from db.session import SessionMaker
from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.runs import RunRef, RunState, RunStatus
from worker import build_worker


@dataclass
class HostRunnerDouble(RecordingRunnerDouble):
    """A runner whose runs live on its own host, like the local runner's processes: asked about
    a run it did not start, it answers `missing`. Remembers every job id it was asked about."""

    host_bound: ClassVar[bool] = True
    asked: list[str] = field(default_factory=list)
    _asked_lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, ref: RunRef) -> RunStatus:
        with self._asked_lock:
            self.asked.append(ref.job_id)
        if ref.job_id not in self.started():
            return RunStatus(RunState.MISSING, reason=f"no run {ref.job_id} on this host")
        return super().status(ref)

    def started(self) -> set[str]:
        with self._lock:
            return {self.ref_of(r.deployment_id, r.run).job_id for r in self.triggers}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Longer than a worker restart below, short enough for a gone host to show quickly.
    return settings.model_copy(update={"host_answer_timeout_s": 20})


@asynccontextmanager
async def _host(
    name: str,
    settings: Settings,
    sessionmaker: SessionMaker,
    runner: HostRunnerDouble | None = None,
) -> AsyncIterator[HostRunnerDouble]:
    """A worker host; given the runner of an earlier one, the same host restarted."""
    runner = runner or HostRunnerDouble()
    on_host = settings.model_copy(update={"worker_host": name})
    # A connection of its own, as a worker on another machine has (one client may not carry
    # two workers of one task queue).
    own_client = await Client.connect(settings.temporal_address)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(own_client, on_host, sessionmaker, runner, executor):
            yield runner


async def _launch(api: httpx.AsyncClient, user: Any, template_id: int, name: str) -> int:
    body = {"template_id": template_id, "deployment_name": name}
    response = await api.post("/api/deployments", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _status(api: httpx.AsyncClient, user: Any, deployment_id: int) -> dict[str, Any]:
    response = await api.get(f"/api/deployments/{deployment_id}", headers=user.headers)
    return dict(response.json())


async def test_each_run_is_watched_only_by_the_host_that_started_it(
    api: httpx.AsyncClient,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    make_template: Any,
) -> None:
    """beta restarts while its runs wait: meanwhile alpha runs their workflows, and must not be
    the one asked about them (it would answer `missing`, failing runs that are fine)."""
    alice = await make_user("operator")
    template_id = await make_template()
    beta = HostRunnerDouble()
    async with _host("alpha", settings, sessionmaker) as alpha:
        async with _host("beta", settings, sessionmaker, beta):
            ids = [await _launch(api, alice, template_id, f"pg-{n}") for n in range(6)]

            async def each_checked() -> bool:
                asked = alpha.asked + beta.asked
                return all(RecordingRunnerDouble.ref_of(i).job_id in asked for i in ids)

            await wait_for(each_checked, timeout_s=60)
        assert beta.started(), "no run landed on beta"
        # beta is down: its workflows move to alpha once their sticky tasks time out (10 s).
        await asyncio.sleep(12)
        checked = len(alpha.asked) + len(beta.asked)
        async with _host("beta", settings, sessionmaker, beta):

            async def checked_again() -> bool:
                return len(alpha.asked) + len(beta.asked) >= checked + 2 * len(ids)

            await wait_for(checked_again, timeout_s=60)
            statuses = [(await _status(api, alice, i))["status"] for i in ids]
    assert statuses == ["queued"] * len(ids)  # nothing was declared missing
    for runner in (alpha, beta):
        assert set(runner.asked) <= runner.started()
    assert len(alpha.started()) + len(beta.started()) == len(ids)


async def test_a_run_whose_host_is_gone_fails_with_that_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    make_template: Any,
) -> None:
    alice = await make_user("operator")
    template_id = await make_template()
    async with AsyncExitStack() as beta_up:
        async with AsyncExitStack() as alpha_up:
            # alpha alone at first: the run lands there. Then beta comes, and alpha goes.
            alpha = await alpha_up.enter_async_context(_host("alpha", settings, sessionmaker))
            deployment_id = await _launch(api, alice, template_id, "pg-on-alpha")
            job = RecordingRunnerDouble.ref_of(deployment_id).job_id

            async def started() -> bool:
                return job in alpha.started()

            await wait_for(started, timeout_s=30)
            beta = await beta_up.enter_async_context(_host("beta", settings, sessionmaker))
        # alpha's worker is gone; beta serves the shared queue.

        async def settled() -> dict[str, Any] | None:
            detail = await _status(api, alice, deployment_id)
            return detail if detail["status"] == "failed" else None

        failed = await wait_for(settled, timeout_s=60)
        history = await api.get(f"/api/deployments/{deployment_id}/history", headers=alice.headers)
    assert job not in beta.asked  # beta was never asked about alpha's run
    result = [row for row in history.json() if row["status"] == "failed"][-1]
    assert "its host stopped answering" in result["message"]
    assert f"{settings.temporal_task_queue}@alpha" in result["message"]
    assert failed["status"] == "failed"
