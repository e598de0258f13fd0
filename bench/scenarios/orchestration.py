"""Scenario 1 (with 5, footprint): deployments from POST to `succeeded` vs the bare workflow.

Both sides run N workflows with the same client concurrency, in ABBA order (bare, Provisio,
Provisio, bare; each a half of N) so that a drift of the machine during the run weighs on both
alike. Provisio: POST /api/deployments, then wait until the `succeeded` row is committed (the
deployment's workflow lives on after it). Bare: start_workflow, then wait for its result. RSS
of the API and the worker is sampled during the Provisio halves, the bare worker's during the
bare halves.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client

from bench.baseline import BASELINE_TASK_QUEUE, BareInput, BareWorkflow
from bench.context import BenchContext, run_pool
from bench.stats import percentile
from vocabulary.statuses import DeploymentStatus as S

PRODUCT_PROCESSES = ("api", "worker", "temporal", "postgres")
BASELINE_PROCESSES = ("baseline-worker", "temporal")


async def provisio_deployment(ctx: BenchContext, name: str) -> None:
    created = await ctx.launch(name)
    status = await ctx.settled(created["id"])
    if status != S.SUCCEEDED:
        raise RuntimeError(f"deployment {created['id']} ended {status}")


async def bare_workflow(temporal: Client, workflow_id: str) -> None:
    handle = await temporal.start_workflow(
        BareWorkflow.run, BareInput(), id=workflow_id, task_queue=BASELINE_TASK_QUEUE
    )
    if await handle.result() != S.SUCCEEDED:
        raise RuntimeError(f"bare workflow {workflow_id} did not succeed")


async def warm_up(ctx: BenchContext, n: int) -> None:
    """JIT-free Python still has cold paths: imports, pools, caches, the server's shards."""
    if n <= 0:
        return
    concurrency = min(10, n)

    async def product(i: int) -> None:
        await provisio_deployment(ctx, ctx.name("warm"))

    async def bare(i: int) -> None:
        await bare_workflow(ctx.temporal, f"bare-warm-{uuid.uuid4()}")

    await run_pool(n, concurrency, product)
    await run_pool(n, concurrency, bare)


async def run(ctx: BenchContext) -> dict[str, Any]:
    n, concurrency = ctx.config.orchestration_n, ctx.config.orchestration_concurrency
    halves = [n // 2, n - n // 2]
    wall = {"provisio": 0.0, "bare": 0.0}
    latencies: dict[str, list[float]] = {"provisio": [], "bare": []}
    cpu: dict[str, dict[str, float]] = {"provisio": {}, "bare": {}}
    rss = {"api": 0.0, "worker": 0.0, "baseline-worker": 0.0}

    async def product(i: int) -> None:
        await provisio_deployment(ctx, ctx.name("orch"))

    async def bare(i: int) -> None:
        await bare_workflow(ctx.temporal, f"bare-orch-{uuid.uuid4()}")

    plan = [
        ("bare", halves[0]),
        ("provisio", halves[0]),
        ("provisio", halves[1]),
        ("bare", halves[1]),
    ]
    for side, count in plan:
        if count == 0:
            continue
        processes = PRODUCT_PROCESSES if side == "provisio" else BASELINE_PROCESSES
        with ctx.profile(f"orchestration-{side}"):
            async with ctx.monitor(*processes) as monitor:
                lat, seconds = await run_pool(
                    count, concurrency, product if side == "provisio" else bare
                )
        wall[side] += seconds
        latencies[side] += lat
        for name, value in monitor.cpu_s.items():
            cpu[side][name] = cpu[side].get(name, 0.0) + value
        for name, value in monitor.peak_rss_mb.items():
            if name in rss:
                rss[name] = max(rss[name], value)
    ctx.stack.check_alive()

    product_rate = n / wall["provisio"]
    bare_rate = n / wall["bare"]
    return {
        "orchestration_wf_s": product_rate,
        "baseline_wf_s": bare_rate,
        "orchestration_ratio": product_rate / bare_rate,
        "orchestration_n": n,
        "orchestration_concurrency": concurrency,
        "orchestration_p50_s": percentile(latencies["provisio"], 50),
        "baseline_wf_p50_s": percentile(latencies["bare"], 50),
        "orchestration_p99_s": percentile(latencies["provisio"], 99),
        "baseline_wf_p99_s": percentile(latencies["bare"], 99),
        "api_rss_mb": rss["api"],
        "worker_rss_mb": rss["worker"],
        "baseline_worker_rss_mb": rss["baseline-worker"],
        # CPU seconds per deployment, per process: where the time of a deployment goes.
        "cpu_ms_per_deployment": {k: 1000 * v / n for k, v in cpu["provisio"].items()},
        "cpu_ms_per_bare_workflow": {k: 1000 * v / n for k, v in cpu["bare"].items()},
    }
