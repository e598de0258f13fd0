"""What every scenario shares: the stack, an HTTP client, a Temporal client, signed-in users."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from temporalio.client import Client

from bench.config import BenchConfig
from bench.monitor import ProcessMonitor, Profiler
from bench.settled import SettleWatcher
from bench.stack import HOLD_TEMPLATE, OPERATOR, BenchStack


@dataclass
class BenchContext:
    stack: BenchStack
    config: BenchConfig
    http: httpx.AsyncClient
    temporal: Client
    operator: dict[str, str]
    operator_id: int
    template_id: int
    hold_template_id: int
    profile_dir: Path | None = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    retries: int = 0  # launches sent again after a transport error
    _names: itertools.count[int] = field(default_factory=itertools.count)
    _settle: SettleWatcher | None = None

    def name(self, prefix: str) -> str:
        """A deployment name unique in this run (the API refuses a name used twice)."""
        return f"{prefix}-{self.run}-{next(self._names)}"

    async def settled(self, deployment_id: int) -> str:
        """The status a deployment settles in (its workflow lives on after that)."""
        if self._settle is None:
            self._settle = SettleWatcher(self.stack.asyncpg_dsn)
        return await self._settle.settled(deployment_id)

    async def raw(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.stack.asyncpg_dsn)

    def monitor(self, *names: str) -> ProcessMonitor:
        groups: dict[str, list[psutil.Process]] = {}
        for name in names:
            if name == "postgres":
                groups[name] = self.stack.postgres_processes()
            elif name == "temporal":
                process = self.stack.temporal_process()
                groups[name] = [process] if process else []
            else:
                groups[name] = [self.stack.process(name)]
        return ProcessMonitor(groups)

    def profile(self, label: str) -> Profiler:
        pids = {name: self.stack.children[name].pid for name in ("api", "worker")}
        return Profiler(self.profile_dir, label, pids)

    async def launch(self, name: str, template_id: int | None = None) -> dict[str, Any]:
        """POST /api/deployments as the operator; the 201 body.

        With an Idempotency-Key, as a careful client sends it, so that a request lost to a
        connection the server closed meanwhile (keep-alive race) can be sent again safely."""
        body = {"template_id": template_id or self.template_id, "deployment_name": name}
        headers = {**self.operator, "Idempotency-Key": f"bench-{name}"}
        for attempt in range(3):
            try:
                response = await self.http.post("/api/deployments", json=body, headers=headers)
                break
            except httpx.TransportError:
                self.retries += 1
                if attempt == 2:
                    raise
        if response.status_code != 201:
            raise RuntimeError(f"launch {name}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()  # type: ignore[no-any-return]


async def sign_in(http: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await http.post("/api/auth/token", data={"username": username, "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def open_context(
    stack: BenchStack, config: BenchConfig, http: httpx.AsyncClient
) -> BenchContext:
    temporal = await Client.connect(stack.temporal_address)
    operator = await sign_in(http, OPERATOR, stack.operator_password)
    me = (await http.get("/api/users/me", headers=operator)).json()
    return BenchContext(
        stack=stack,
        config=config,
        http=http,
        temporal=temporal,
        operator=operator,
        operator_id=int(me["id"]),
        template_id=stack.template_ids["postgres-small"],
        hold_template_id=stack.template_ids[HOLD_TEMPLATE],
        profile_dir=Path(config.profile_dir) if config.profile_dir else None,
    )


async def run_pool(
    n: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> tuple[list[float], float]:
    """Run `call(i)` for i in range(n) with `concurrency` in flight; (latencies in s, wall s)."""
    indexes = iter(range(n))
    latencies: list[float] = []

    async def client() -> None:
        for i in indexes:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, n)))))
    return latencies, time.perf_counter() - started
