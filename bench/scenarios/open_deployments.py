"""Scenario 6: the cost of open deployments.

A deployment's workflow lives as long as the deployment, so every succeeded deployment is an
open workflow: in the worker's cache while it fits (`PROVISIO_WORKER_MAX_CACHED_WORKFLOWS`), on
the server always. The same operation is timed with `open_small` (10) deployments open, on
`open_samples` fresh ones, and with `open_large` (1,000) open, on as many of them chosen at
random (most no longer cached): POST /api/deployments/{id}/destroy until its 202, one at a time
(the answer waits for the workflow to accept the update and record its first step, which for an
evicted workflow means a replay first). The figure is the p99 with many open over the p99 with
few, and the worker's RSS with many open.

Every destroyed one is awaited to `destroyed`. The other residents stay open: this scenario
runs last and the stack goes with it.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.bulk import BULK_WORKFLOW_PREFIX
from bench.context import BenchContext, run_pool
from bench.monitor import MB
from bench.stats import percentile
from vocabulary.statuses import DeploymentStatus as S

LAUNCH_CONCURRENCY = 50
DESTROYED_POLL_S = 0.05


async def _open(ctx: BenchContext, count: int, prefix: str) -> list[int]:
    """`count` deployments launched and settled `succeeded`; their ids."""
    ids: list[int] = []

    async def one(i: int) -> None:
        created = await ctx.launch(ctx.name(prefix))
        status = await ctx.settled(created["id"])
        if status != S.SUCCEEDED:
            raise RuntimeError(f"deployment {created['id']} settled {status}")
        ids.append(created["id"])

    await run_pool(count, LAUNCH_CONCURRENCY, one)
    return ids


async def _destroy_answer_ms(ctx: BenchContext, deployment_id: int) -> float:
    started = time.perf_counter()
    response = await ctx.http.post(
        f"/api/deployments/{deployment_id}/destroy",
        headers={**ctx.operator, "Idempotency-Key": f"bench-destroy-{ctx.run}-{deployment_id}"},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 202:
        raise RuntimeError(f"destroy {deployment_id}: HTTP {response.status_code} {response.text}")
    return elapsed


async def _all_destroyed(ctx: BenchContext, ids: list[int], timeout_s: float = 120) -> None:
    connection = await ctx.raw()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            left = await connection.fetchval(
                "SELECT count(*) FROM deployments WHERE id = ANY($1::bigint[]) AND status <> $2",
                ids,
                S.DESTROYED.value,
            )
            if left == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} probes not destroyed within {timeout_s}s")
            await asyncio.sleep(DESTROYED_POLL_S)
    finally:
        await connection.close()


async def _destroy_each(ctx: BenchContext, ids: list[int]) -> list[float]:
    """Destroy answers (ms), one destroy at a time; then every one of them `destroyed`."""
    answers = [await _destroy_answer_ms(ctx, deployment_id) for deployment_id in ids]
    await _all_destroyed(ctx, ids)
    return answers


async def _open_count(ctx: BenchContext) -> int:
    """Succeeded deployments with a workflow (the reads scenario's bulk rows have none)."""
    connection = await ctx.raw()
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM deployments WHERE status = $1 AND workflow_id NOT LIKE $2",
                S.SUCCEEDED.value,
                f"{BULK_WORKFLOW_PREFIX}%",
            )
        )
    finally:
        await connection.close()


async def run(ctx: BenchContext) -> dict[str, Any]:
    config = ctx.config
    small, large, samples = config.open_small, config.open_large, config.open_samples
    # Earlier scenarios may have left succeeded deployments: they count as open too.
    already = await _open_count(ctx)
    await _open(ctx, max(0, small - already), "resident")
    open_small = await _open_count(ctx)
    # With few open, fresh ones are destroyed (the count stays near `small`).
    few = await _destroy_each(ctx, await _open(ctx, samples, "probe"))
    started = time.perf_counter()
    residents = await _open(ctx, max(samples, large - open_small), "resident")
    open_s = time.perf_counter() - started
    open_large = await _open_count(ctx)
    worker = ctx.stack.process("worker")
    worker_rss = worker.memory_info().rss / MB
    # With many open, any of them: most are no longer in the worker's cache.
    many = await _destroy_each(ctx, random.Random(0).sample(residents, samples))
    worker_rss = max(worker_rss, worker.memory_info().rss / MB)
    ctx.stack.check_alive()
    few_p99, many_p99 = percentile(few, 99), percentile(many, 99)
    return {
        "open_small": open_small,
        "open_large": open_large,
        "open_samples": samples,
        "open_fill_s": open_s,
        "open_destroy_few_p50_ms": percentile(few, 50),
        "open_destroy_few_p99_ms": few_p99,
        "open_destroy_many_p50_ms": percentile(many, 50),
        "open_destroy_many_p99_ms": many_p99,
        "open_destroy_p99_ratio": many_p99 / few_p99,
        "open_worker_rss_mb": worker_rss,
    }
