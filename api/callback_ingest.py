"""Ingestion of the callback plugin's events: signature checks, normalisation to the callback
contract (`vocabulary/callback_events.py`), and the milestones the workflow hears.

A request carries `X-Provisio-Timestamp` (unix seconds) and `X-Provisio-Signature`
(`sha256=` + hex HMAC-SHA256 over `timestamp + "." + body`, keyed by the deployment's callback
token). Events are stored once per (deployment, counter) as history rows (`db/callback_store.py`);
the workflow hears only the milestones (playbook start, final stats), so its Temporal history
stays small.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import DatabaseUnavailable, Forbidden, NotAuthenticated, ValidationFailed
from api.numbers import BIGINT_MAX, ascii_int
from db.callback_store import (
    CallbackTarget,
    EventRow,
    first_failing_event,
    store_batch,
    workflow_id_of,
)
from domain.callback_tokens import callback_token
from vocabulary import callback_events as contract
from vocabulary.statuses import FINAL_STATUSES

MAX_SKEW_S = 300
# Past this a request's timestamp is stale, so its signature need not be remembered longer.
REPLAY_MEMORY_S = 2 * MAX_SKEW_S + 60


@dataclass
class Milestones:
    started: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


# What a lost connection raises (the server restarted or killed it), as opposed to a bug in a
# statement; SQLAlchemy's own test for asyncpg is the connection being closed.
_CONNECTION_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


@asynccontextmanager
async def callback_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's pool as asyncpg's own, outside any transaction (each
    statement commits on its own). A lost connection is dropped from the pool and answered
    503, as the app's handler answers SQLAlchemy's (api/errors.py)."""
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            yield raw
        except _CONNECTION_LOST as exc:
            await connection.invalidate()
            raise DatabaseUnavailable(
                f"the database is unavailable, try again: {type(exc).__name__}"
            ) from None
        except asyncpg.PostgresError:
            if raw.is_closed():
                await connection.invalidate()
                raise DatabaseUnavailable("the database is unavailable, try again") from None
            raise


def signature_of(token: str, timestamp: str, body: bytes) -> str:
    return hmac.new(token.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# Deployment id → its workflow's id, which never changes: a run's requests after its first are
# checked without reading the deployment first (the storing statement reads it, and stores
# nothing unless it still has that workflow). Bounded; emptied when full.
_WORKFLOW_IDS: dict[int, str] = {}
_WORKFLOW_IDS_MAX = 10_000


async def authenticate(
    connection: asyncpg.Connection,
    secret_key: str,
    deployment_id: int,
    run: int,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
) -> tuple[CallbackTarget, str]:
    """The deployment and the request's signature, or 401. Checks freshness before the HMAC.
    The token is the run's own: a request that claims another run fails the check."""
    if not timestamp or not signature or not signature.startswith("sha256="):
        raise NotAuthenticated("missing or malformed signature")
    # ASCII digits only: '²'.isdigit() is true and int('²') raised (a 500 to anyone, unsigned).
    sent_at = ascii_int(timestamp, low=0, high=BIGINT_MAX)
    if sent_at is None or abs(time.time() - sent_at) > MAX_SKEW_S:
        raise NotAuthenticated("stale or invalid timestamp")
    sent = signature.removeprefix("sha256=")
    known = _WORKFLOW_IDS.get(deployment_id)
    if known is not None:
        expected = signature_of(
            callback_token(secret_key, deployment_id, known, run), timestamp, body
        )
        if hmac.compare_digest(expected, sent):
            return CallbackTarget(deployment_id, known), expected
        # Not signed for it: checked against the database as if unknown (same work, same answer).
    workflow_id = await workflow_id_of(connection, deployment_id)
    # An unknown deployment answers like a bad signature: the endpoint reveals nothing.
    token = callback_token(secret_key, deployment_id, workflow_id or "", run)
    expected = signature_of(token, timestamp, body)
    if not hmac.compare_digest(expected, sent) or workflow_id is None:
        raise NotAuthenticated("invalid signature")
    if len(_WORKFLOW_IDS) >= _WORKFLOW_IDS_MAX:
        _WORKFLOW_IDS.clear()
    _WORKFLOW_IDS[deployment_id] = workflow_id
    return CallbackTarget(deployment_id, workflow_id), expected


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """One event or `{"events": [...]}`, each reduced to what the contract keeps."""
    try:
        payload = _loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise ValidationFailed([_err(["body"], "invalid JSON")]) from None
    raw = payload.get("events") if isinstance(payload, dict) and "events" in payload else [payload]
    most = contract.MAX_EVENTS_PER_BATCH
    if not isinstance(raw, list) or not 1 <= len(raw) <= most:
        raise ValidationFailed([_err(["body", "events"], f"1 to {most} events")])
    return [_normalise(index, event) for index, event in enumerate(raw)]


# Every digit as "0": a run of 19 of them may be an integer past 64 bits.
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"0" * 9)
_LONG_NUMBER = b"0" * 19


def _loads(body: bytes) -> Any:
    """The body as Python's reader reads it, in a third of the time where orjson reads it the
    same: orjson reads an integer past 64 bits as a float (so a body with a number of 19 digits
    or more goes to Python's reader), and refuses what Python's reader takes and the contract
    then judges (NaN, lone surrogates, 1e400, nesting past 1,024): those go to Python's reader."""
    if _LONG_NUMBER not in body.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's reader takes them; PostgreSQL's jsonb does not)."""
    raise ValueError(f"{name} is not JSON")


def _err(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value"}


_EVENT_NAMES = frozenset(contract.EVENT_NAMES)
_STRUCTURED_DATA_KEYS = contract.STRUCTURED_DATA_KEYS
_TEXT_DATA_KEYS = contract.TEXT_DATA_KEYS
_MAX_TEXT_CHARS = contract.MAX_TEXT_CHARS
_MIN_NUMBER, _MAX_NUMBER = contract.MIN_NUMBER, contract.MAX_NUMBER


def _text(value: Any) -> str | None:
    if type(value) is str and len(value) <= _MAX_TEXT_CHARS and contract.NUL not in value:
        return value  # what bound_text gives back, without the call (most values)
    return None if value is None else contract.bound_text(value)


def _normalise(index: int, event: Any) -> dict[str, Any]:
    # A parsed body holds exact dicts, ints and strs, so `type(x) is int` is the contract's
    # "an integer, not a boolean"; the common cases are decided here inline (thousands of
    # events a second), anything else by the contract's own checks.
    if type(event) is not dict:
        raise ValidationFailed([_err(["body", "events", index], "must be an object")])
    counter, name = event.get("counter"), event.get("event")
    if type(counter) is not int or not 1 <= counter <= contract.MAX_COUNTER:
        most = contract.MAX_COUNTER
        loc = ["body", "events", index, "counter"]
        raise ValidationFailed([_err(loc, f"must be an integer from 1 to {most}")])
    if type(name) is not str or name not in _EVENT_NAMES:
        raise ValidationFailed([_err(["body", "events", index, "event"], "unknown event")])
    data = event.get("data")
    kept: dict[str, Any] = {}
    check_structured = False
    if type(data) is dict:
        for key, value in data.items():
            if key in _STRUCTURED_DATA_KEYS:
                kept[key] = value
                if key == "stats" or not (
                    value is None
                    or type(value) is bool
                    or (type(value) is int and _MIN_NUMBER <= value <= _MAX_NUMBER)
                ):
                    check_structured = True
            elif key in _TEXT_DATA_KEYS:
                kept[key] = _text(value)
    # Structured values are kept as sent, so they are bounded here: one out of bounds refuses the
    # whole batch (422, nothing stored), like any other malformed event.
    if check_structured:
        for key in sorted(kept.keys() & _STRUCTURED_DATA_KEYS):
            if problem := contract.structured_value_problem(key, kept[key]):
                raise ValidationFailed([_err(["body", "events", index, "data", key], problem)])
    normalised: dict[str, Any] = {"counter": counter, "event": name}
    for key in contract.EVENT_TEXT_KEYS:
        normalised[key] = _text(event.get(key))
    normalised["data"] = kept
    return normalised


def history_message(event: dict[str, Any]) -> str:
    """The history row's one-line message for a stored event."""
    name, host, task = event["event"], event["host"], event["task"]
    if name == contract.PLAYBOOK_ON_START:
        return "Playbook started"
    if name == contract.PLAYBOOK_ON_STATS:
        return "Playbook finished"
    if name == contract.TASK_START:
        return f"Task: {task or ''}".strip()
    if name == contract.PLAY_START:
        return f"Play: {task or ''}".strip()
    outcome = contract.RESULT_OUTCOMES[name]
    return f"{outcome}: {host or '?'} — {task or ''}".rstrip(" —")


_FINAL_STATUSES = sorted(str(status) for status in FINAL_STATUSES)


async def store_events(
    connection: asyncpg.Connection,
    target: CallbackTarget,
    run: int,
    signature: str,
    events: list[dict[str, Any]],
) -> tuple[int, Milestones]:
    """Store new events once each; (rows written, milestones the batch carries).

    A request whose signature was already accepted is a replay: 403, nothing written. Events for
    a finished deployment change nothing (the signature is remembered all the same)."""
    rows = [EventRow(event["counter"], history_message(event), event) for event in events]
    batch = await store_batch(
        connection,
        target,
        run,
        signature,
        rows,
        memory_s=REPLAY_MEMORY_S,
        final_statuses=_FINAL_STATUSES,
    )
    if not batch.found:  # deleted since (or not the deployment whose workflow signed it)
        _WORKFLOW_IDS.pop(target.id, None)
        raise NotAuthenticated("invalid signature")
    if not batch.first_time:
        raise Forbidden("replayed request")
    milestones = Milestones()
    if batch.status not in FINAL_STATUSES:
        for event in events:
            if event["event"] == contract.PLAYBOOK_ON_START:
                milestones.started = {"playbook_uuid": event["uuid"], "at": event["timestamp"]}
            elif event["event"] == contract.PLAYBOOK_ON_STATS:
                milestones.stats = event["data"].get("stats") or {}
    return batch.stored, milestones


async def failure_reason(
    connection: asyncpg.Connection, deployment_id: int, run: int
) -> str | None:
    """The first failing host and task of the run, from the stored events."""
    event = await first_failing_event(connection, deployment_id, run)
    if event is None:
        return None
    data = event.get("data") or {}
    return contract.failure_sentence(event["event"], event["task"], event["host"], data.get("msg"))
