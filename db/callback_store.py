"""The callback endpoint's SQL: the deployment a request speaks for, the memory of accepted
signatures (replay protection), the events as history rows, and the run's first failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from asyncpg import Connection

from vocabulary.callback_events import FAILING_EVENTS


def event_key_prefix(run: int) -> str:
    """History rows of callback events are keyed by their run and counter: a re-sent event writes
    nothing, and the run after a retry (whose counters start at 1 again) writes its own rows."""
    return "event:" if run == 1 else f"run{run}:event:"


@dataclass(frozen=True)
class CallbackTarget:
    """What the endpoint needs of the deployment a callback names."""

    id: int
    workflow_id: str
    status: str
    attempt: int


@dataclass(frozen=True)
class EventRow:
    counter: int
    message: str
    details: dict[str, Any]


# The endpoint speaks asyncpg directly, with plain SQL: at thousands of events a second,
# SQLAlchemy's session, execution context and statement building cost more CPU than storing the
# rows (see "The callback plugin and endpoint" in docs/architecture.md). The connection is a
# pooled one outside any transaction, so each statement commits on its own.
_TARGET_SQL = "SELECT workflow_id, status, attempt FROM deployments WHERE id = $1"

# One statement, so one round trip and one transaction: the signature is remembered and the
# batch's rows written together, or neither. The rows come as arrays (one parameter each, so
# one prepared statement whatever the batch's size); a replay (the signature already
# remembered) writes no row. Signatures past the memory are forgotten meanwhile.
_STORE_BATCH_SQL = """
WITH remembered AS (
    INSERT INTO callback_signatures (signature, deployment_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
    RETURNING signature
), forgotten AS (
    DELETE FROM callback_signatures WHERE received_at < now() - $3::int * interval '1 second'
), stored AS (
    INSERT INTO deployment_history (deployment_id, event_key, status, message, details, attempt)
    SELECT $2, row.event_key, $4, row.message, row.details::jsonb, $5
    FROM unnest($6::text[], $7::text[], $8::text[]) AS row(event_key, message, details)
    WHERE EXISTS (SELECT FROM remembered)
    ON CONFLICT ON CONSTRAINT deployment_history_event_key DO NOTHING
    RETURNING 1
)
SELECT EXISTS (SELECT FROM remembered) AS first_time, (SELECT count(*) FROM stored) AS stored
"""

_FIRST_FAILING_SQL = """
SELECT details::text FROM deployment_history
WHERE deployment_id = $1
  AND event_key LIKE ($2 || '%')
  AND details->>'event' = ANY($3::text[])
  -- A failure the playbook chose to ignore is not why the run failed.
  AND (details->'data'->>'ignore_errors') IS DISTINCT FROM 'true'
ORDER BY id
LIMIT 1
"""


async def callback_target(connection: Connection, deployment_id: int) -> CallbackTarget | None:
    row = await connection.fetchrow(_TARGET_SQL, deployment_id)
    if row is None:
        return None
    return CallbackTarget(deployment_id, row["workflow_id"], row["status"], row["attempt"])


async def store_batch(
    connection: Connection,
    target: CallbackTarget,
    run: int,
    signature: str,
    events: list[EventRow],
    *,
    memory_s: int,
) -> int | None:
    """Remembers the signature and inserts the rows not stored yet, in one statement: how many
    rows were new, or None if the signature was already remembered (a replay: nothing written).
    Forgets signatures older than `memory_s`, by which time their requests are stale anyway."""
    prefix = event_key_prefix(run)
    row = await connection.fetchrow(
        _STORE_BATCH_SQL,
        signature,
        target.id,
        int(memory_s),
        target.status,
        target.attempt,
        [f"{prefix}{event.counter}" for event in events],
        [event.message for event in events],
        [orjson.dumps(event.details).decode() for event in events],
    )
    assert row is not None  # the statement's SELECT always answers one row
    return int(row["stored"]) if row["first_time"] else None


async def first_failing_event(
    connection: Connection, deployment_id: int, run: int
) -> dict[str, Any] | None:
    """The stored event of the run's first failing host and task, ignored failures left out."""
    details = await connection.fetchval(
        _FIRST_FAILING_SQL, deployment_id, event_key_prefix(run), list(FAILING_EVENTS)
    )
    return None if details is None else dict(orjson.loads(details))
