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
    """The deployment a callback names: its id and its workflow's (which signs its token)."""

    id: int
    workflow_id: str


@dataclass(frozen=True)
class EventRow:
    counter: int
    message: str
    details: dict[str, Any]


# The endpoint speaks asyncpg directly, with plain SQL: at thousands of events a second,
# SQLAlchemy's session, execution context and statement building cost more CPU than storing the
# rows (see "The callback plugin and endpoint" in docs/architecture.md). The connection is a
# pooled one outside any transaction, so each statement commits on its own.
_WORKFLOW_ID_SQL = "SELECT workflow_id FROM deployments WHERE id = $1"

# One statement, so one round trip and one transaction: the deployment is read (it must still
# be the one whose workflow signed the request), the signature remembered and the batch's rows
# written together, or nothing. The rows come as arrays (one parameter each, so one prepared
# statement whatever the batch's size), each with the deployment's status and attempt of this
# moment. A replay (the signature already remembered) writes no row, nor does a batch for a
# deployment in a final status. Signatures past the memory are forgotten meanwhile.
_STORE_BATCH_SQL = """
WITH target AS (
    SELECT status, attempt FROM deployments WHERE id = $2 AND workflow_id = $3
), remembered AS (
    INSERT INTO callback_signatures (signature, deployment_id)
    SELECT $1, $2 FROM target
    ON CONFLICT DO NOTHING
    RETURNING signature
), forgotten AS (
    DELETE FROM callback_signatures WHERE received_at < now() - $4::int * interval '1 second'
), stored AS (
    INSERT INTO deployment_history (deployment_id, event_key, status, message, details, attempt)
    SELECT $2, row.event_key, target.status, row.message, row.details::jsonb, target.attempt
    FROM target, unnest($6::text[], $7::text[], $8::text[]) AS row(event_key, message, details)
    WHERE EXISTS (SELECT FROM remembered) AND target.status <> ALL($5::text[])
    ON CONFLICT ON CONSTRAINT deployment_history_event_key DO NOTHING
    RETURNING 1
)
SELECT
    (SELECT status FROM target) AS status,
    EXISTS (SELECT FROM remembered) AS first_time,
    (SELECT count(*) FROM stored) AS stored
"""


@dataclass(frozen=True)
class StoredBatch:
    """What storing a batch found and did."""

    found: bool  # the deployment is there, still with the workflow that signed the request
    status: str | None  # the deployment's status when the batch was stored
    first_time: bool  # the signature was not remembered yet (else a replay: nothing written)
    stored: int  # rows written (events not stored before)


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


async def workflow_id_of(connection: Connection, deployment_id: int) -> str | None:
    value = await connection.fetchval(_WORKFLOW_ID_SQL, deployment_id)
    return None if value is None else str(value)


async def store_batch(
    connection: Connection,
    target: CallbackTarget,
    run: int,
    signature: str,
    events: list[EventRow],
    *,
    memory_s: int,
    final_statuses: list[str],
) -> StoredBatch:
    """Remembers the signature and inserts the rows not stored yet, in one statement, unless
    the signature was remembered already or the deployment's status is one of
    `final_statuses`. Forgets signatures older than `memory_s`, by which time their requests
    are stale anyway."""
    prefix = event_key_prefix(run)
    row = await connection.fetchrow(
        _STORE_BATCH_SQL,
        signature,
        target.id,
        target.workflow_id,
        int(memory_s),
        final_statuses,
        [f"{prefix}{event.counter}" for event in events],
        [event.message for event in events],
        [orjson.dumps(event.details).decode() for event in events],
    )
    assert row is not None  # the statement's SELECT always answers one row
    status = row["status"]
    return StoredBatch(status is not None, status, row["first_time"], int(row["stored"]))


async def first_failing_event(
    connection: Connection, deployment_id: int, run: int
) -> dict[str, Any] | None:
    """The stored event of the run's first failing host and task, ignored failures left out."""
    details = await connection.fetchval(
        _FIRST_FAILING_SQL, deployment_id, event_key_prefix(run), list(FAILING_EVENTS)
    )
    return None if details is None else dict(orjson.loads(details))
