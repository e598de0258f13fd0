"""Scenario 3: the read views at scale vs the same SQL run directly with asyncpg.

100,000 deployments, 300,000 disks and 1,000,000 history rows (by default) are COPYed in, then
each view is called through the API as an operator who owns a tenth of them: the detail, the
first page of the list, a deep page (a cursor half-way down the operator's deployments) and the
history. The baseline runs the very statement the API sends (captured from
`db.deployment_reads`' `*_for_caller` functions, the caller's check included: the same text and
parameters) on one asyncpg connection of the same client process. API and raw calls alternate
request by request. The API is timed through `bench.lean_http` (see there why not httpx).
`read_http_floor_p50_ms` is GET /docs on the same API (no database, no auth): what uvicorn and
FastAPI alone cost per request here, which no change to the SQL can remove;
`read_httpx_floor_p50_ms` is the same request through httpx, to show what the client library
alone would add.
`read_{view}_p50_floor_ratio` is the view's p50 over (HTTP floor p50 + raw p50): what the API
adds beyond serving any request and running the statement; `read_p50_floor_ratio` is the worst
view's. `read_api_cpu_ms` is the API process's CPU per read request: its CPU over the timed
loop less that of as many floor requests again (the loop sends two per round, one through
each client), measured alone after it (`read_floor_api_cpu_ms`, per floor request);
`read_api_cpu_ms_per_request` is the loop's CPU with the floor's in it, as first reported.

Plans: EXPLAIN ANALYZE of each statement (the custom plan) and EXPLAIN (GENERIC_PLAN) (what a
prepared statement may switch to); `seq_scans` counts sequential scans of the big tables in
them. `seq_scans_observed` is the growth of pg_stat_user_tables.seq_scan of those tables over
the whole read phase, so every statement the API ran is covered.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from api.cursors import encode_cursor
from api.security import hash_password
from bench import bulk
from bench.context import BenchContext
from bench.lean_http import LeanHTTP
from bench.stats import percentile
from db import deployment_reads

BIG_TABLES = ("deployments", "disk_allocations", "deployment_history")
LIST_LIMIT = 20  # the endpoint's default page size
# pg_stat counters of other backends are flushed when idle, at most this long after the fact.
STATS_FLUSH_S = 11


class _Captured(Exception):
    pass


class _CapturingConnection:
    """Stands in for the asyncpg connection the API's read views fetch on."""

    async def fetch(self, query: str, *args: Any) -> Any:
        raise _Captured(query, list(args))


async def captured_sql(view: Awaitable[Any]) -> tuple[str, list[Any]]:
    """The statement a read function would send, as text and positional parameters."""
    try:
        await view
    except _Captured as captured:
        return captured.args[0], captured.args[1]
    raise RuntimeError("the read function sent no statement")


def plan_nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, relation) of every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    nodes = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def seq_scans_on_big_tables(nodes: list[tuple[str, str | None]]) -> int:
    return sum(1 for kind, rel in nodes if kind == "Seq Scan" and rel in BIG_TABLES)


def describe(nodes: list[tuple[str, str | None]]) -> list[str]:
    return [f"{kind} on {rel}" if rel else kind for kind, rel in nodes]


def _literals(params: list[Any]) -> str:
    """EXECUTE takes values, not placeholders: the reads' parameters are ints and strings."""
    out = []
    for value in params:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"unexpected parameter {value!r}")
        out.append(str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'")
    return ", ".join(out)


async def _explain(conn: asyncpg.Connection, sql: str, params: list[Any]) -> dict[str, Any]:
    analyzed = json.loads(
        await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
    )[0]
    # The plan a prepared statement may switch to after five runs: forced generic.
    await conn.execute(f"PREPARE bench_generic AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = json.loads(
            await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE bench_generic({_literals(params)})")
        )[0]
    finally:
        await conn.execute("RESET plan_cache_mode; DEALLOCATE bench_generic")
    custom_nodes, generic_nodes = plan_nodes(analyzed["Plan"]), plan_nodes(generic["Plan"])
    return {
        "nodes": describe(custom_nodes),
        "generic_nodes": describe(generic_nodes),
        "execution_ms": analyzed["Execution Time"],
        "seq_scans": seq_scans_on_big_tables(custom_nodes) + seq_scans_on_big_tables(generic_nodes),
    }


async def _seq_scan_counts(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables"
            " WHERE relname = ANY($1::text[])",
            list(BIG_TABLES),
        )
    )


async def run(ctx: BenchContext) -> dict[str, Any]:
    cfg = ctx.config
    conn = await ctx.raw()
    lean = LeanHTTP(ctx.stack.api_url)
    try:
        loaded = await bulk.load(
            conn,
            reader_id=ctx.operator_id,
            users=max(1, cfg.read_users),
            deployments=cfg.read_deployments,
            disks=cfg.read_disks,
            history=cfg.read_history,
            template_ids=sorted(ctx.stack.template_ids.values()),
            password_hash=hash_password("bench-bulk-user-no-login"),
        )
        owned = [
            int(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM deployments WHERE user_id = $1 AND id BETWEEN $2 AND $3"
                " ORDER BY id DESC",
                ctx.operator_id,
                loaded.first_id,
                loaded.last_id,
            )
        ]
        rng = random.Random(3)
        requests = cfg.read_requests
        picks = [rng.choice(owned) for _ in range(requests)]
        # Deep pages: cursors between 40% and 90% of the way down the operator's list.
        deep = [
            owned[rng.randrange(int(len(owned) * 0.4), int(len(owned) * 0.9))]
            for _ in range(requests)
        ]

        # What the API sends for each request: the caller's check and the read in one
        # statement (db.deployment_reads' `*_for_caller`), the operator as the caller.
        capture = _CapturingConnection()
        reader = ctx.operator_id
        views: dict[str, Callable[[int], tuple[str, Awaitable[Any]]]] = {
            "detail": lambda i: (
                f"/api/deployments/{picks[i]}",
                deployment_reads.detail_for_caller(capture, reader, picks[i]),
            ),
            "list_first": lambda i: (
                f"/api/deployments?limit={LIST_LIMIT}",
                deployment_reads.page_for_caller(
                    capture,
                    reader,
                    status=None,
                    template_id=None,
                    before_id=None,
                    limit=LIST_LIMIT,
                ),
            ),
            "list_deep": lambda i: (
                f"/api/deployments?limit={LIST_LIMIT}&cursor={encode_cursor(deep[i])}",
                deployment_reads.page_for_caller(
                    capture,
                    reader,
                    status=None,
                    template_id=None,
                    before_id=deep[i],
                    limit=LIST_LIMIT,
                ),
            ),
            "history": lambda i: (
                f"/api/deployments/{picks[i]}/history",
                deployment_reads.history_for_caller(capture, reader, picks[i]),
            ),
        }
        statements: dict[str, list[tuple[str, str, list[Any]]]] = {}
        for name, view in views.items():
            statements[name] = []
            for i in range(requests):
                url, call = view(i)
                sql, params = await captured_sql(call)
                statements[name].append((url, sql, params))

        plans = {name: await _explain(conn, *items[0][1:]) for name, items in statements.items()}
        await lean.connect()

        # Warm both paths (the API's prepared statements, the raw connection's, the caches).
        for items in statements.values():
            for url, sql, params in items[: min(20, requests)]:
                await lean.get_json(url, headers=ctx.operator)
                await conn.fetch(sql, *params)

        seq_before = await _seq_scan_counts(conn)
        api_ms: dict[str, list[float]] = {name: [] for name in statements}
        raw_ms: dict[str, list[float]] = {name: [] for name in statements}
        floor_ms: list[float] = []
        httpx_floor_ms: list[float] = []
        rows_mismatch = 0
        with ctx.profile("reads"):
            async with ctx.monitor("api", "postgres") as monitor:
                for i in range(requests):
                    for name, items in statements.items():
                        url, sql, params = items[i]
                        order = ("api", "raw") if i % 2 == 0 else ("raw", "api")
                        for side in order:
                            started = time.perf_counter()
                            if side == "api":
                                status, raw_body = await lean.get(url, headers=ctx.operator)
                                elapsed = time.perf_counter() - started
                                if status != 200:
                                    raise RuntimeError(f"GET {url}: HTTP {status}")
                                api_ms[name].append(1000 * elapsed)
                                body = json.loads(raw_body)
                            else:
                                rows = await conn.fetch(sql, *params)
                                raw_ms[name].append(1000 * (time.perf_counter() - started))
                        got = (
                            len(body["items"])
                            if name.startswith("list")
                            else (len(body) if name == "history" else 1)
                        )
                        want = min(len(rows), LIST_LIMIT) if name.startswith("list") else len(rows)
                        rows_mismatch += got != want
                    # The HTTP floor: FastAPI's static docs page, no database, no auth.
                    started = time.perf_counter()
                    status, _ = await lean.get("/docs")
                    floor_ms.append(1000 * (time.perf_counter() - started))
                    started = time.perf_counter()
                    (await ctx.http.get("/docs")).raise_for_status()
                    httpx_floor_ms.append(1000 * (time.perf_counter() - started))
        # The floor's requests alone, as many again: their CPU is taken out of the reads'.
        async with ctx.monitor("api") as floor_monitor:
            for _ in range(requests):
                await lean.get("/docs")
                (await ctx.http.get("/docs")).raise_for_status()
        await asyncio.sleep(STATS_FLUSH_S if requests >= 100 else 0)
        seq_after = await _seq_scan_counts(conn)
    finally:
        await conn.close()
        lean.close()
    ctx.stack.check_alive()

    figures: dict[str, Any] = {
        "read_rows": {
            "deployments": cfg.read_deployments,
            "disk_allocations": cfg.read_disks,
            "deployment_history": cfg.read_history,
        },
        "read_load_s": loaded.seconds,
        "read_requests": requests,
        "read_rows_mismatch": rows_mismatch,
        # With the floor's requests (the figure as first measured) and without them.
        "read_api_cpu_ms_per_request": 1000 * monitor.cpu_s["api"] / (requests * len(statements)),
        "read_api_cpu_ms": 1000
        * max(0.0, monitor.cpu_s["api"] - floor_monitor.cpu_s["api"])
        / (requests * len(statements)),
        "read_floor_api_cpu_ms": 1000 * floor_monitor.cpu_s["api"] / (2 * requests),
        "read_plans": plans,
        "seq_scans": sum(p["seq_scans"] for p in plans.values()),
        "seq_scans_observed": seq_after - seq_before,
        "read_http_floor_p50_ms": percentile(floor_ms, 50),
        "read_httpx_floor_p50_ms": percentile(httpx_floor_ms, 50),
    }
    ratios, floor_ratios = [], []
    for name in statements:
        for q in (50, 99):
            api_value, raw_value = percentile(api_ms[name], q), percentile(raw_ms[name], q)
            figures[f"read_{name}_p{q}_ms"] = api_value
            figures[f"read_{name}_raw_p{q}_ms"] = raw_value
            figures[f"read_{name}_p{q}_ratio"] = api_value / raw_value
        ratios.append((figures[f"read_{name}_p50_ratio"], name))
        floor_ratio = figures[f"read_{name}_p50_ms"] / (
            figures["read_http_floor_p50_ms"] + figures[f"read_{name}_raw_p50_ms"]
        )
        figures[f"read_{name}_p50_floor_ratio"] = floor_ratio
        floor_ratios.append((floor_ratio, name))
    figures["read_p50_floor_ratio"], figures["read_p50_floor_ratio_view"] = max(floor_ratios)
    worst, worst_name = max(ratios)
    figures["read_p50_ratio"] = worst  # the worst view's: the target holds for every view
    figures["read_p50_ratio_view"] = worst_name
    figures["read_p50_ms"] = figures[f"read_{worst_name}_p50_ms"]
    figures["read_raw_p50_ms"] = figures[f"read_{worst_name}_raw_p50_ms"]
    return figures
