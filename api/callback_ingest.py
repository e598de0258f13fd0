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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Forbidden, NotAuthenticated, ValidationFailed
from api.numbers import BIGINT_MAX, ascii_int
from db.callback_store import (
    CallbackTarget,
    EventRow,
    callback_target,
    first_failing_event,
    remember_signature,
    store_event_rows,
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


def signature_of(token: str, timestamp: str, body: bytes) -> str:
    return hmac.new(token.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def authenticate(
    session: AsyncSession,
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
    target = await callback_target(session, deployment_id)
    # An unknown deployment answers like a bad signature: the endpoint reveals nothing.
    token = callback_token(secret_key, deployment_id, target.workflow_id if target else "", run)
    expected = signature_of(token, timestamp, body)
    if not hmac.compare_digest(expected, signature.removeprefix("sha256=")) or target is None:
        raise NotAuthenticated("invalid signature")
    return target, expected


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """One event or `{"events": [...]}`, each reduced to what the contract keeps."""
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise ValidationFailed([_err(["body"], "invalid JSON")]) from None
    raw = payload.get("events") if isinstance(payload, dict) and "events" in payload else [payload]
    most = contract.MAX_EVENTS_PER_BATCH
    if not isinstance(raw, list) or not 1 <= len(raw) <= most:
        raise ValidationFailed([_err(["body", "events"], f"1 to {most} events")])
    return [_normalise(index, event) for index, event in enumerate(raw)]


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's reader takes them; PostgreSQL's jsonb does not)."""
    raise ValueError(f"{name} is not JSON")


def _err(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value"}


def _text(value: Any) -> str | None:
    return None if value is None else contract.bound_text(value)


def _normalise(index: int, event: Any) -> dict[str, Any]:
    loc = ["body", "events", index]
    if not isinstance(event, dict):
        raise ValidationFailed([_err(loc, "must be an object")])
    counter, name = event.get("counter"), event.get("event")
    if (
        not isinstance(counter, int)
        or isinstance(counter, bool)
        or not 1 <= counter <= contract.MAX_COUNTER
    ):
        most = contract.MAX_COUNTER
        raise ValidationFailed([_err([*loc, "counter"], f"must be an integer from 1 to {most}")])
    if name not in contract.EVENT_NAMES:
        raise ValidationFailed([_err([*loc, "event"], "unknown event")])
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    kept = {
        key: value if key in contract.STRUCTURED_DATA_KEYS else _text(value)
        for key, value in data.items()
        if key in contract.DATA_KEYS
    }
    # Structured values are kept as sent, so they are bounded here: one out of bounds refuses the
    # whole batch (422, nothing stored), like any other malformed event.
    for key in sorted(kept.keys() & contract.STRUCTURED_DATA_KEYS):
        if problem := contract.structured_value_problem(key, kept[key]):
            raise ValidationFailed([_err([*loc, "data", key], problem)])
    texts = {key: _text(event.get(key)) for key in contract.EVENT_TEXT_KEYS}
    return {"counter": counter, "event": name, **texts, "data": kept}


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


async def store_events(
    session: AsyncSession,
    target: CallbackTarget,
    run: int,
    signature: str,
    events: list[dict[str, Any]],
) -> tuple[int, Milestones]:
    """Store new events once each; (rows written, milestones the batch carries).

    A request whose signature was already accepted is a replay: 403, nothing written. Events for
    a finished deployment change nothing."""
    if not await remember_signature(session, target.id, signature, memory_s=REPLAY_MEMORY_S):
        raise Forbidden("replayed request")
    milestones = Milestones()
    if target.status in FINAL_STATUSES:
        return 0, milestones
    for event in events:
        if event["event"] == contract.PLAYBOOK_ON_START:
            milestones.started = {"playbook_uuid": event["uuid"], "at": event["timestamp"]}
        elif event["event"] == contract.PLAYBOOK_ON_STATS:
            milestones.stats = event["data"].get("stats") or {}
    rows = [EventRow(event["counter"], history_message(event), event) for event in events]
    return await store_event_rows(session, target, run, rows), milestones


async def failure_reason(session: AsyncSession, deployment_id: int, run: int) -> str | None:
    """The first failing host and task of the run, from the stored events."""
    event = await first_failing_event(session, deployment_id, run)
    if event is None:
        return None
    data = event.get("data") or {}
    return contract.failure_sentence(event["event"], event["task"], event["host"], data.get("msg"))
