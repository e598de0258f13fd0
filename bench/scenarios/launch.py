"""Scenario 2: latency of POST /api/deployments vs a bare start from the same client process.

At each client concurrency the two kinds run in blocks, in rotating order, so that a drift of
the machine weighs on each alike:
- `api`: POST /api/deployments (validation, the row, `start_workflow`, answer with the row);
- `bare_start`: `start_workflow` of the bare workflow (returns once the server has it).
Every launched run is held (no callback, no signals) so that only the launch is measured; the
held runs are terminated at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from temporalio.service import RPCError

from bench.baseline import BASELINE_TASK_QUEUE, BareInput, BareWorkflow
from bench.context import BenchContext, run_pool
from bench.runner import HOLD_PREFIX
from bench.stats import percentile

KINDS = ("api", "bare_start")


async def run(ctx: BenchContext) -> dict[str, Any]:
    held: list[str] = []
    block_ids: list[Any] = []  # this block's deployment ids (api) or workflow ids (bare)
    figures: dict[str, Any] = {}

    async def api(i: int) -> None:
        created = await ctx.launch(ctx.name(f"{HOLD_PREFIX}launch"), ctx.hold_template_id)
        held.append(created["workflow_id"])
        block_ids.append(created["id"])

    async def bare_start(i: int) -> None:
        workflow_id = f"bare-hold-{uuid.uuid4()}"
        await ctx.temporal.start_workflow(
            BareWorkflow.run, BareInput(hold=True), id=workflow_id, task_queue=BASELINE_TASK_QUEUE
        )
        held.append(workflow_id)
        block_ids.append(workflow_id)

    calls = {"api": api, "bare_start": bare_start}
    conn = await ctx.raw()
    try:
        for concurrency, total in zip(
            ctx.config.launch_concurrency, ctx.config.launch_requests, strict=True
        ):
            blocks = max(1, min(4, total // max(concurrency, 5)))
            sizes = [total // blocks + (1 if b < total % blocks else 0) for b in range(blocks)]
            latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
            with ctx.profile(f"launch-c{concurrency}"):
                for block, size in enumerate(sizes):
                    for k in range(len(KINDS)):
                        kind = KINDS[(block + k) % len(KINDS)]
                        block_ids.clear()
                        lat, _ = await run_pool(size, concurrency, calls[kind])
                        latencies[kind] += lat
                        # A launched run goes on after its answer (the steps up to the wait
                        # for the callback); let it finish before the next kind is measured.
                        if kind == "api":
                            await _drain_deployments(conn, list(block_ids))
                        else:
                            await _drain_bare(ctx, list(block_ids))
            for kind in KINDS:
                for q in (50, 95, 99):
                    figures[f"launch_c{concurrency}_{kind}_p{q}_ms"] = 1000 * percentile(
                        latencies[kind], q
                    )
    finally:
        await conn.close()
        await _terminate(ctx, held)
    ctx.stack.check_alive()

    top = max(ctx.config.launch_concurrency)
    figures["launch_p99_ms"] = figures[f"launch_c{top}_api_p99_ms"]
    figures["baseline_start_p99_ms"] = figures[f"launch_c{top}_bare_start_p99_ms"]
    figures["launch_p99_ratio"] = figures["launch_p99_ms"] / figures["baseline_start_p99_ms"]
    figures["launch_top_concurrency"] = top
    figures["launch_concurrency_levels"] = list(ctx.config.launch_concurrency)
    return figures


async def _drain_deployments(
    conn: asyncpg.Connection, ids: list[int], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queued = await conn.fetchval(
            "SELECT count(*) FROM deployments WHERE id = ANY($1::bigint[]) AND status = 'queued'",
            ids,
        )
        if queued == len(ids):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("held deployments did not reach `queued`")


async def _drain_bare(ctx: BenchContext, workflow_ids: list[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(workflow_ids)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError("bare held workflows did not reach their wait")
        # Runs progress roughly in start order: ask the latest first, all of them once it is.
        if not await ctx.temporal.get_workflow_handle(pending[-1]).query(BareWorkflow.waiting):
            await asyncio.sleep(0.05)
            continue
        answers = await asyncio.gather(
            *(ctx.temporal.get_workflow_handle(w).query(BareWorkflow.waiting) for w in pending)
        )
        pending = [w for w, done in zip(pending, answers, strict=True) if not done]
        if pending:
            await asyncio.sleep(0.05)


async def _terminate(ctx: BenchContext, workflow_ids: list[str]) -> None:
    """Held runs would otherwise sit in the worker's cache and the server for a day."""
    gate = asyncio.Semaphore(20)

    async def one(workflow_id: str) -> None:
        async with gate:
            try:
                await ctx.temporal.get_workflow_handle(workflow_id).terminate("bench: held run")
            except RPCError:
                pass  # already gone

    await asyncio.gather(*(one(w) for w in workflow_ids))
