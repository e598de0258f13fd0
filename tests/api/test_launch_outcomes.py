"""A launch against a workflow service that fails under it: nothing held, nothing half-made,
and an honest answer when the outcome is unknown (the Idempotency-Key makes the retry safe)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.session import SessionMaker
from devstack import temporal
from settings import Settings
from tests.conftest import start_temporal_dev_server, wait_for


async def _counts(sessionmaker: SessionMaker) -> tuple[int, int, int]:
    async with sessionmaker() as session:
        return tuple(  # type: ignore[return-value]
            [
                await session.scalar(select(func.count()).select_from(table))
                for table in (Deployment, DiskAllocation, DeploymentHistory)
            ]
        )


async def _api_with(settings: Settings, temporal_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_workflow_service_killed_under_the_launch_is_503_and_nothing_is_left(
    settings: Settings, make_user: Any, make_template: Any, sessionmaker: SessionMaker
) -> None:
    """A second, real dev server, stopped after the API connected to it."""
    process, port = start_temporal_dev_server()
    try:
        doomed = await Client.connect(f"127.0.0.1:{port}")
    finally:
        temporal.stop(process)
    quick = settings.model_copy(update={"temporal_rpc_timeout_s": 2.0})
    alice = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    async for http in _api_with(quick, doomed):
        response = await http.post("/api/deployments", json=body, headers=alice.headers)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert "did not confirm the start" in response.json()["detail"]
    assert await _counts(sessionmaker) == (0, 0, 0)


class _WatchesTheDatabase:
    """The real client; before each start it looks for transactions held open meanwhile."""

    def __init__(self, client: Client, engine: AsyncEngine) -> None:
        self._client = client
        self._engine = engine
        self.open_transactions: list[int] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        async with self._engine.connect() as connection:
            held = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        self.open_transactions.append(int(held or 0))
        return await self._client.start_workflow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_no_transaction_is_held_while_the_workflow_starts(
    settings: Settings, client: Client, engine: AsyncEngine, make_user: Any, make_template: Any
) -> None:
    watching = _WatchesTheDatabase(client, engine)
    alice = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    async for http in _api_with(settings, watching):
        response = await http.post("/api/deployments", json=body, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert watching.open_transactions == [0]


class _LosesTheAnswer:
    """The real client, but the first start's answer is lost after the server took it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.lost = 0

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        handle = await self._client.start_workflow(*args, **kwargs)
        if self.lost == 0:
            self.lost += 1
            raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")
        return handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("worker_first", [True, False])
async def test_a_lost_start_answer_is_unknown_and_the_keyed_retry_is_the_same_deployment(
    settings: Settings,
    client: Client,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
    worker_first: bool,
) -> None:
    losing = _LosesTheAnswer(client)
    alice = await make_user("operator")
    body = {"template_id": await make_template(), "deployment_name": "pg-one"}
    # A key of its own: the dev server outlives the database between tests.
    headers = {**alice.headers, "Idempotency-Key": f"launch-{uuid.uuid4()}"}
    async for http in _api_with(settings, losing):
        first = await http.post("/api/deployments", json=body, headers=headers)
        assert first.status_code == 503, first.text
        assert "unknown" in first.json()["detail"]
        assert "same Idempotency-Key" in first.json()["detail"]
        if worker_first:  # the workflow's own first step records the deployment

            async def recorded() -> bool:
                return (await _counts(sessionmaker))[0] == 1

            await wait_for(recorded)
        retried = await http.post("/api/deployments", json=body, headers=headers)
        assert retried.status_code == 201, retried.text
        again = await http.post("/api/deployments", json=body, headers=headers)
    assert again.json()["id"] == retried.json()["id"]
    async with sessionmaker() as session:
        rows = (await session.execute(select(Deployment.id, Deployment.workflow_id))).all()
    assert len(rows) == 1
    assert rows[0].id == retried.json()["id"]

    async def listed() -> bool:  # the visibility index lags the start
        query = f"WorkflowId = '{rows[0].workflow_id}'"
        return bool([w async for w in client.list_workflows(query)])

    await wait_for(listed)
