"""Scenario 6: scaling on one machine. Launch and read throughput with 1 and 2 API processes on
the one port (`provisio api` with PROVISIO_API_PROCESSES), orchestration throughput with 1 and
2 product worker processes on the one task queue; each pair's ratio is the scaling on record.

The 1-process API is the stack's own; the 2-process one is started beside it on another port
(the same database, Temporal and secrets), warmed up, and stopped at the end: an idle API costs
the other nothing, so the two alternate in ABBA blocks (1, 2, 2, 1 processes, each block a half
of the requests) and a drift of the machine weighs on both alike. The workers also go 1, 2, 2,
1 (a second `bench.worker` started, warmed up, then stopped), and the stack is left as it was
found. Throughput is requests over the wall time of the blocks at that count:
- launch: POST /api/deployments of held deployments (no callback, as the launch scenario's),
  `concurrency` clients; the runs are drained to `queued` between blocks and terminated at the
  end;
- read: GET /api/deployments/{id} (the detail view) of the deployments launched here;
- orchestration: POST to `succeeded`, as the orchestration scenario's deployments.
The clients are `bench.lean_http`'s (httpx would spend more CPU than the API on this machine)
and reconnect every RECONNECT_EVERY requests: the kernel hands a new connection to whichever
API process accepts it, so a connection pinned for the whole run would fix the split at the
start. `scaling_api_cpu_share_2` is how the API's CPU split between its two processes.

Sizes come from the other scenarios' knobs, per process count: the launch scenario's top
concurrency and its largest request count, twice the reads' request count, a quarter of
orchestration's N at half its concurrency (200, 600 and 50 by default; 6, 20 and 4 in --smoke).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from bench.context import BenchContext, run_pool
from bench.lean_http import LeanHTTP, LeanHTTPError
from bench.runner import HOLD_PREFIX
from bench.scenarios.launch import _drain_deployments, _terminate
from bench.scenarios.orchestration import provisio_deployment

COUNTS = (1, 2)
ABBA = (1, 2, 2, 1)  # the process count of each block
TWO = "api-2-processes"  # the second API's name in the stack
RECONNECT_EVERY = 25


class LeanClient(LeanHTTP):
    """LeanHTTP with POST: the launch's JSON body and its 201 answer."""

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        payload = json.dumps(body).encode()
        lines = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = next(
            (
                int(value)
                for name, _, value in (line.partition(":") for line in header_lines)
                if name.lower() == "content-length"
            ),
            None,
        )
        if length is None:
            raise LeanHTTPError(f"POST {path}: no Content-Length")
        return int(status_line.split(" ", 2)[1]), await self._reader.readexactly(length)


Request = Callable[[LeanClient, int], Awaitable[None]]


async def _rate(
    url: str, n: int, concurrency: int, request: Request, reconnect_every: int = RECONNECT_EVERY
) -> tuple[int, float]:
    """`request(client, i)` for i in range(n), `concurrency` clients; (n, wall seconds)."""
    indexes = iter(range(n))

    async def client() -> None:
        lean, sent = LeanClient(url), 0
        await lean.connect()
        try:
            for i in indexes:
                if sent and sent % reconnect_every == 0:
                    lean.close()
                    lean = LeanClient(url)
                    await lean.connect()
                await request(lean, i)
                sent += 1
        finally:
            lean.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, n)))))
    return n, time.perf_counter() - started


def _halves(n: int) -> list[int]:
    """The requests of each ABBA block: n for each process count, a half in each of its two."""
    return [n // 2, n // 2, n - n // 2, n - n // 2]


def _cpu_s(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


async def _set_workers(ctx: BenchContext, processes: int, spent: list[float]) -> bool:
    """`processes` product workers; whether the count changed for it."""
    if ctx.stack.worker_processes == processes:
        return False
    started = time.perf_counter()
    await asyncio.to_thread(ctx.stack.set_workers, processes)
    spent.append(time.perf_counter() - started)
    return True


async def run(ctx: BenchContext) -> dict[str, Any]:
    cfg = ctx.config
    concurrency = max(cfg.launch_concurrency)
    launch_n = max(cfg.launch_requests)
    read_n = 2 * cfg.read_requests
    orchestration_n = max(4, cfg.orchestration_n // 4)
    orchestration_concurrency = max(2, cfg.orchestration_concurrency // 2)
    workers_before = ctx.stack.worker_processes

    held: list[str] = []
    launched: list[int] = []
    block_ids: list[int] = []

    async def launch(client: LeanClient, i: int) -> None:
        name = ctx.name(f"{HOLD_PREFIX}scale")
        body = {"template_id": ctx.hold_template_id, "deployment_name": name}
        headers = {**ctx.operator, "Idempotency-Key": f"bench-{name}"}
        status, answer = await client.post("/api/deployments", body, headers)
        if status != 201:
            raise RuntimeError(f"launch {name}: HTTP {status} {answer[:300]!r}")
        created = json.loads(answer)
        held.append(created["workflow_id"])
        block_ids.append(int(created["id"]))

    async def read(client: LeanClient, i: int) -> None:
        deployment_id = launched[i % len(launched)]
        status, answer = await client.get(f"/api/deployments/{deployment_id}", ctx.operator)
        if status != 200:
            raise RuntimeError(f"GET deployment {deployment_id}: HTTP {status} {answer[:300]!r}")

    async def launches(
        url: str, n: int, reconnect_every: int = RECONNECT_EVERY
    ) -> tuple[int, float]:
        """n launches, then their runs drained to `queued` (a launched run goes on after its
        answer: it must not weigh on what is measured next)."""
        block_ids.clear()
        done, seconds = await _rate(url, n, concurrency, launch, reconnect_every)
        await _drain_deployments(conn, list(block_ids))
        launched.extend(block_ids)
        return done, seconds

    async def deploy(i: int) -> None:
        await provisio_deployment(ctx, ctx.name("scale"))

    totals: dict[str, dict[int, list[float]]] = {
        side: {count: [0.0, 0.0] for count in COUNTS}
        for side in ("launch", "read", "orchestration")
    }
    cpu_two: dict[int, float] = {}
    worker_changes: list[float] = []
    conn = await ctx.raw()
    started = time.perf_counter()
    urls = {1: ctx.stack.api_url, 2: await asyncio.to_thread(ctx.stack.start_api, TWO, 2)}
    api_start_s = time.perf_counter() - started
    try:
        await launches(ctx.stack.api_url, concurrency)  # deployments to read from the start
        # The new processes open their pools and fill their caches on their first requests:
        # each on a new connection, so that every process gets its share.
        await _rate(urls[2], 4 * concurrency, concurrency, read, reconnect_every=1)
        await launches(urls[2], concurrency, reconnect_every=1)
        for count, launch_half, read_half in zip(
            ABBA, _halves(launch_n), _halves(read_n), strict=True
        ):
            serving = ctx.stack.api_serving_processes(TWO) if count == 2 else []
            before = _cpu_s(serving)
            with ctx.profile(f"scaling-api-{count}"):
                for side, measured in (
                    ("launch", await launches(urls[count], launch_half)),
                    ("read", await _rate(urls[count], read_half, concurrency, read)),
                ):
                    totals[side][count][0] += measured[0]
                    totals[side][count][1] += measured[1]
            for pid, spent in _cpu_s(serving).items():
                cpu_two[pid] = cpu_two.get(pid, 0.0) + spent - before.get(pid, 0.0)
        await asyncio.to_thread(ctx.stack.stop_api, TWO)

        for count, deployments in zip(ABBA, _halves(orchestration_n), strict=True):
            if await _set_workers(ctx, count, worker_changes):
                await run_pool(orchestration_concurrency, orchestration_concurrency, deploy)
            with ctx.profile(f"scaling-workers-{count}"):
                _, seconds = await run_pool(deployments, orchestration_concurrency, deploy)
            totals["orchestration"][count][0] += deployments
            totals["orchestration"][count][1] += seconds
        await _set_workers(ctx, workers_before, worker_changes)
    finally:
        if TWO in ctx.stack.apis:
            await asyncio.to_thread(ctx.stack.stop_api, TWO)
        await conn.close()
        await _terminate(ctx, held)
    ctx.stack.check_alive()

    figures: dict[str, Any] = {
        "scaling_concurrency": concurrency,
        "scaling_launch_n": launch_n,
        "scaling_read_n": read_n,
        "scaling_orchestration_n": orchestration_n,
        "scaling_orchestration_concurrency": orchestration_concurrency,
        # Wall time to start the 2-process API and to change the worker count (not measured).
        "scaling_api_start_s": api_start_s,
        "scaling_worker_changes_s": worker_changes,
    }
    for side, unit in (("launch", "rps"), ("read", "rps"), ("orchestration", "wf_s")):
        rates = {count: done / seconds for count, (done, seconds) in totals[side].items()}
        figures[f"scaling_{side}_{unit}_1"] = rates[1]
        figures[f"scaling_{side}_{unit}_2"] = rates[2]
        figures[f"scaling_{side}_ratio"] = rates[2] / rates[1]
    spent = sum(cpu_two.values()) or 1.0
    figures["scaling_api_cpu_share_2"] = sorted(
        (value / spent for value in cpu_two.values()), reverse=True
    )
    return figures
