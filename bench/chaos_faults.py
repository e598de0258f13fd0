"""The chaos run's faults, struck one after another at random moments, and the time the stack
takes to recover from each.

- `worker_kill`: SIGKILL the worker (no shutdown, its activities cut off mid-way), then start a
  new one at once, as a supervisor would.
- `postgres_restart`: stop PostgreSQL immediately (every backend killed, the WAL replayed at the
  next start, as after a crash), leave it down `down_s`, start it on the same data directory.
- `temporal_restart`: stop the Temporal dev server (SIGTERM), leave it down `down_s`, start it
  again on the same SQLite file and port: its workflows, timers and task queues carry on.

Recovery, measured from the moment the fault struck:
- `answer_s`: until the part is back (the new worker polls its task queue, as Temporal reports
  it; PostgreSQL accepts connections; after a Temporal restart, the worker polls again) and the
  API's health check, which reads PostgreSQL and asks Temporal, answers 200;
- `recovery_s`: until the first workflow step (a history row the worker writes: neither the
  API's `created` row nor a playbook's callback event) is recorded after the part was back,
  i.e. until deployments move again. None when none came within the bound; `note` says why.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.chaos_stack import ChaosStack

WORKER_KILL = "worker_kill"
POSTGRES_RESTART = "postgres_restart"
TEMPORAL_RESTART = "temporal_restart"
# History rows only a worker writes: the workflow's steps.
WORKFLOW_STEP = "event_key <> 'created' AND event_key !~ '^(run[0-9]+:)?event:'"


@dataclass
class FaultRecord:
    kind: str
    at_s: float  # since the run started
    in_flight: int  # deployments being followed when it struck
    down_s: float
    answer_s: float | None = None
    recovery_s: float | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


def plan_faults(worker_kills: int, rng: random.Random) -> list[str]:
    plan = [WORKER_KILL] * worker_kills + [POSTGRES_RESTART, TEMPORAL_RESTART]
    rng.shuffle(plan)
    return plan


class FaultInjector:
    def __init__(
        self,
        stack: ChaosStack,
        plan: list[str],
        rng: random.Random,
        *,
        gap_s: tuple[float, float],
        down_s: float,
        started: float,
        in_flight: Callable[[], int],
        struck: Callable[[int], None],
        answer_timeout_s: float = 300,
        progress_timeout_s: float = 300,
    ) -> None:
        """`gap_s`: bounds of the random pause before each fault; `struck(n)` is told after the
        n-th fault recovered (the load launches more then)."""
        self.stack = stack
        self.plan = plan
        self.rng = rng
        self.gap_s = gap_s
        self.down_s = down_s
        self.started = started
        self.in_flight = in_flight
        self.struck = struck
        self.answer_timeout_s = answer_timeout_s
        self.progress_timeout_s = progress_timeout_s
        self.records: list[FaultRecord] = []
        self.done = False

    async def run(self) -> list[FaultRecord]:
        try:
            for number, kind in enumerate(self.plan, start=1):
                await asyncio.sleep(self.rng.uniform(*self.gap_s))
                self.records.append(await self._strike(kind))
                self.struck(number)
        finally:
            self.done = True
        return self.records

    async def _strike(self, kind: str) -> FaultRecord:
        stack = self.stack
        struck_wall = time.time()
        struck = time.monotonic()
        record = FaultRecord(kind, struck - self.started, self.in_flight(), 0.0)
        back: Callable[[], Awaitable[bool]]
        if kind == WORKER_KILL:
            await asyncio.to_thread(stack.kill_worker)
            stack.start_worker()
            back = stack.worker_polling
        elif kind == POSTGRES_RESTART:
            await asyncio.to_thread(stack.stop_postgres)
            await asyncio.sleep(self.down_s)
            await asyncio.to_thread(stack.start_postgres)
            back = stack.postgres_accepts
        elif kind == TEMPORAL_RESTART:
            await asyncio.to_thread(stack.stop_temporal)
            await asyncio.sleep(self.down_s)
            await asyncio.to_thread(stack.start_temporal)
            back = stack.worker_polling
        else:
            raise ValueError(f"unknown fault {kind!r}")
        record.down_s = time.monotonic() - struck

        deadline = time.monotonic() + self.answer_timeout_s
        while not (await back() and await stack.api_healthy()):
            stack.check_alive()
            if time.monotonic() > deadline:
                record.note = f"the stack did not answer within {self.answer_timeout_s:.0f}s"
                return record
            await asyncio.sleep(0.1)
        record.answer_s = time.monotonic() - struck
        # A step from the moment the service was back counts, even before our health checks
        # passed: a deployment in flight may finish in between (its callback lands first).
        back_at = datetime.fromtimestamp(struck_wall + record.down_s, UTC)

        moved = await self._first_step_after(back_at)
        if moved is None:
            record.note = (
                "no workflow step after it: nothing was in flight"
                if self.in_flight() == 0
                else f"no workflow step within {self.progress_timeout_s:.0f}s"
            )
        else:
            record.recovery_s = moved.timestamp() - struck_wall
        return record

    async def _first_step_after(self, since: datetime) -> datetime | None:
        deadline = time.monotonic() + self.progress_timeout_s
        connection = await asyncpg.connect(self.stack.asyncpg_dsn)
        try:
            while time.monotonic() < deadline:
                found: datetime | None = await connection.fetchval(
                    f"SELECT min(created_at) FROM deployment_history"
                    f" WHERE created_at >= $1 AND {WORKFLOW_STEP}",
                    since,
                )
                if found is not None:
                    return found
                if self.in_flight() == 0:
                    return None
                await asyncio.sleep(0.1)
        finally:
            await connection.close()
        return None
