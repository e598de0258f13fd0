"""Scenario 4: callback events/s accepted by one API process, stored exactly once.

A playbook-shaped stream (`hosts` × `tasks` results, task starts, start and final stats) is
cut into the batches the callback plugin sends, signed with the deployment's token and POSTed
one at a time, in order, as the plugin's sender thread does, through a minimal keep-alive
client (the plugin's sender is another machine's; httpx here would spend as much CPU per batch
as the API). Each stream re-sends one batch (the plugin's retry after a lost answer,
re-signed): it must store nothing. Measured for one playbook, then for `streams` playbooks at
once (one API process; several playbooks running).

Baseline: the same rows (normalised by the API's own `parse_events`) written with a plain
multi-row INSERT … ON CONFLICT DO NOTHING RETURNING, as SQLAlchemy compiles one, one
transaction per batch, directly with asyncpg, for one and for `streams` parallel streams. It
is the floor of storing the rows at all, whatever statement the API uses.

Exactly once: per deployment, the stored `event:<counter>` rows are counted against the
stream's events (lost) and against their distinct keys (duplicated).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert

from api.callback_ingest import history_message, parse_events
from bench.context import BenchContext
from bench.events import playbook_batches, playbook_event_count, signed_request
from bench.lean_http import LeanHTTP, LeanHTTPError
from bench.runner import HOLD_PREFIX
from db.models import DeploymentHistory
from domain.callback_tokens import callback_token
from vocabulary.statuses import DeploymentStatus as S

DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


async def _held_deployments(ctx: BenchContext, count: int) -> list[dict[str, Any]]:
    created = [
        await ctx.launch(ctx.name(f"{HOLD_PREFIX}cb"), ctx.hold_template_id) for _ in range(count)
    ]
    ids = [c["id"] for c in created]
    conn = await ctx.raw()
    try:
        deadline = time.monotonic() + 60
        while True:  # the runner has been triggered: the playbook could start now
            queued = await conn.fetchval(
                "SELECT count(*) FROM deployments"
                " WHERE id = ANY($1::bigint[]) AND status = 'queued'",
                ids,
            )
            if queued == count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("held deployments did not reach `queued`")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return [
        {**c, "token": callback_token(ctx.stack.callback_secret, c["id"], c["workflow_id"])}
        for c in created
    ]


class _CallbackClient(LeanHTTP):
    """LeanHTTP with the POST of a signed body (see bench/lean_http.py why not httpx: on two
    cores, httpx's 2 ms of Python per request is as much CPU as the API spends on a batch)."""

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
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


def _signed_stream(
    token: str, batches: list[list[dict[str, Any]]]
) -> list[tuple[bytes, dict[str, str], bool]]:
    """(body, headers, is the re-sent one) of each request of a stream, in order, signed before
    the clock starts as the raw side's statements are compiled: each batch once, and the middle
    one again, re-signed (its answer was "lost", the plugin sends it again)."""
    resend_at = len(batches) // 2
    requests = []
    for index, batch in enumerate(batches):
        requests.append((*signed_request(token, batch), False))
        if index == resend_at:
            requests.append((*signed_request(token, batch), True))
    return requests


async def _api_stream(
    ctx: BenchContext,
    deployment: dict[str, Any],
    requests: list[tuple[bytes, dict[str, str], bool]],
) -> dict[str, int]:
    """POSTs the stream's requests one at a time, in order, as the plugin's sender thread does."""
    url = f"/api/deployments/{deployment['id']}/callback"
    stored = accepted = resent_stored = 0
    client = _CallbackClient(ctx.stack.api_url)
    await client.connect()
    try:
        for index, (body, headers, resent) in enumerate(requests):
            status, answer_body = await client.post(url, body, headers)
            if status != 200:
                raise RuntimeError(f"callback request {index}: {status} {answer_body[:300]!r}")
            answer = json.loads(answer_body)
            if resent:
                resent_stored += answer["stored"]
            else:
                accepted += answer["accepted"]
                stored += answer["stored"]
    finally:
        client.close()
    return {"accepted": accepted, "stored": stored, "resent_stored": resent_stored}


def _compiled_insert(deployment_id: int, batch: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The API's INSERT for this batch, compiled as SQLAlchemy sends it through asyncpg."""
    events = parse_events(json.dumps({"events": batch}).encode())
    rows = [
        {
            "deployment_id": deployment_id,
            "event_key": f"event:{e['counter']}",
            "status": S.RUNNING.value,
            "message": history_message(e),
            "details": e,
        }
        for e in events
    ]
    stmt = (
        insert(DeploymentHistory)
        .values(rows)
        .on_conflict_do_nothing(constraint="deployment_history_event_key")
        .returning(DeploymentHistory.id)
    )
    compiled = stmt.compile(dialect=DIALECT)
    params = compiled.construct_params()
    values = [params[name] for name in compiled.positiontup or []]
    return str(compiled), [json.dumps(v) if isinstance(v, dict) else v for v in values]


async def _raw_deployment(conn: asyncpg.Connection, ctx: BenchContext) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO deployments (user_id, template_id, deployment_name, status, workflow_id)"
            " VALUES ($1, $2, $3, 'running', $4) RETURNING id",
            ctx.operator_id,
            ctx.hold_template_id,
            ctx.name("raw-cb"),
            f"raw-cb-{uuid.uuid4()}",
        )
    )


class _RawStream:
    """One stream's batches as the API's statements, on a connection of its own; prepared
    before the clock starts (compiling and connecting are the client's work, not storage)."""

    def __init__(self, deployment_id: int, batches: list[list[dict[str, Any]]]) -> None:
        self.statements = [_compiled_insert(deployment_id, b) for b in batches]
        self.conn: asyncpg.Connection | None = None

    async def connect(self, dsn: str) -> _RawStream:
        self.conn = await asyncpg.connect(dsn)
        return self

    async def run(self) -> int:
        assert self.conn is not None
        stored = 0
        try:
            for sql, params in self.statements:
                async with self.conn.transaction():
                    stored += len(await self.conn.fetch(sql, *params))
        finally:
            await self.conn.close()
        return stored


async def _raw_streams(
    dsn: str, deployment_ids: list[int], batches: list[list[dict[str, Any]]]
) -> tuple[int, float]:
    """(rows stored, seconds) for these streams run at once."""
    streams = [await _RawStream(i, batches).connect(dsn) for i in deployment_ids]
    started = time.perf_counter()
    stored = await asyncio.gather(*(s.run() for s in streams))
    return sum(stored), time.perf_counter() - started


async def _verify(
    ctx: BenchContext,
    deployments: list[dict[str, Any]],
    answers: list[dict[str, int]],
    expected: int,
) -> tuple[int, int]:
    """(lost, duplicated) over these deployments, from the rows and the API's answers."""
    lost = duplicated = 0
    conn = await ctx.raw()
    try:
        for deployment, answer in zip(deployments, answers, strict=True):
            rows, distinct, in_range = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT event_key),"
                " count(DISTINCT event_key) FILTER (WHERE substr(event_key, 7)::int"
                " BETWEEN 1 AND $2)"
                " FROM deployment_history WHERE deployment_id = $1 AND event_key LIKE 'event:%'",
                deployment["id"],
                expected,
            )
            lost += expected - in_range
            duplicated += (rows - distinct) + max(0, answer["stored"] - expected)
            duplicated += answer["resent_stored"]
    finally:
        await conn.close()
    return lost, duplicated


async def run(ctx: BenchContext) -> dict[str, Any]:
    cfg = ctx.config
    expected = playbook_event_count(cfg.callback_hosts, cfg.callback_tasks)
    streams = max(1, cfg.callback_streams)
    batches = list(
        playbook_batches(cfg.callback_hosts, cfg.callback_tasks, cfg.callback_batch_size)
    )
    assert sum(map(len, batches)) == expected
    deployments = await _held_deployments(ctx, 1 + streams)
    single, parallel = deployments[0], deployments[1:]

    conn = await ctx.raw()
    try:
        raw_ids = [await _raw_deployment(conn, ctx) for _ in range(1 + streams)]
    finally:
        await conn.close()

    # ABBA: raw single, API single, API parallel, raw parallel.
    dsn = ctx.stack.asyncpg_dsn
    raw_single_stored, raw_single_s = await _raw_streams(dsn, raw_ids[:1], batches)

    single_requests = _signed_stream(single["token"], batches)
    parallel_requests = [_signed_stream(d["token"], batches) for d in parallel]
    with ctx.profile("callbacks-single"):
        async with ctx.monitor("api", "postgres") as single_monitor:
            started = time.perf_counter()
            single_answer = await _api_stream(ctx, single, single_requests)
            api_single_s = time.perf_counter() - started

    with ctx.profile("callbacks-parallel"):
        async with ctx.monitor("api", "postgres") as parallel_monitor:
            started = time.perf_counter()
            parallel_answers = await asyncio.gather(
                *(_api_stream(ctx, d, r) for d, r in zip(parallel, parallel_requests, strict=True))
            )
            api_parallel_s = time.perf_counter() - started

    raw_parallel_stored, raw_parallel_s = await _raw_streams(dsn, raw_ids[1:], batches)

    # The final stats reached each workflow: every held deployment must now succeed.
    for deployment in deployments:
        status = await ctx.settled(deployment["id"])
        if status != S.SUCCEEDED:
            raise RuntimeError(f"callback deployment {deployment['id']} ended {status}")
    lost, duplicated = await _verify(ctx, deployments, [single_answer, *parallel_answers], expected)
    raw_lost = (1 + streams) * expected - raw_single_stored - raw_parallel_stored
    ctx.stack.check_alive()

    api_single_rate = expected / api_single_s
    api_parallel_rate = streams * expected / api_parallel_s
    raw_single_rate = expected / raw_single_s
    raw_parallel_rate = streams * expected / raw_parallel_s
    return {
        "callback_events_per_s": api_single_rate,
        "callback_baseline_events_per_s": raw_single_rate,
        "callback_ratio": api_single_rate / raw_single_rate,
        "callback_parallel_events_per_s": api_parallel_rate,
        "callback_parallel_baseline_events_per_s": raw_parallel_rate,
        "callback_parallel_ratio": api_parallel_rate / raw_parallel_rate,
        "callback_streams": streams,
        "callback_events_per_stream": expected,
        "callback_batches_per_stream": len(batches),
        "callback_lost": lost,
        "callback_duplicated": duplicated,
        "callback_baseline_lost": raw_lost,
        "callback_api_cpu_ms_per_1k_events": {
            "single": 1000 * single_monitor.cpu_s["api"] / expected * 1000,
            "parallel": 1000 * parallel_monitor.cpu_s["api"] / (streams * expected) * 1000,
        },
        "callback_postgres_cpu_ms_per_1k_events": {
            "single": 1000 * single_monitor.cpu_s["postgres"] / expected * 1000,
            "parallel": 1000 * parallel_monitor.cpu_s["postgres"] / (streams * expected) * 1000,
        },
    }
