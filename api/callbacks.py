"""The callback plugin's events: signature checks, normalisation, storage and milestones.

A request carries `X-Provisio-Timestamp` (unix seconds) and `X-Provisio-Signature`
(`sha256=` + hex HMAC-SHA256 over `timestamp + "." + body`, keyed by the deployment's callback
token). Events are stored once per (deployment, counter) as history rows; the workflow hears only
the milestones (playbook start, final stats), so its Temporal history stays small.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Forbidden, NotAuthenticated, ValidationFailed
from db.models import FINAL_STATUSES, CallbackSignature, Deployment, DeploymentHistory
from domain.callback_tokens import callback_token

MAX_SKEW_S = 300
MAX_EVENTS = 1000
REPLAY_MEMORY_S = 2 * MAX_SKEW_S + 60
EVENT_NAMES = {
    "playbook_on_start",
    "playbook_on_play_start",
    "playbook_on_task_start",
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_skipped",
    "runner_on_unreachable",
    "playbook_on_stats",
}
# Only these keys of an event's data are kept, each string cut to MAX_TEXT characters.
DATA_KEYS = {
    "changed", "failed", "msg", "rc", "censored", "stats", "total_events", "playbook",
    "ignore_errors", "skipped", "unreachable", "action",
}  # fmt: skip
# Kept as sent (numbers, booleans, the stats mapping); every other kept value becomes capped text.
STRUCTURED_KEYS = {"stats", "total_events", "changed", "failed", "rc", "ignore_errors", "skipped",
                   "unreachable"}  # fmt: skip
MAX_TEXT = 2000
FAILING_EVENTS = ("runner_on_failed", "runner_on_unreachable")


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
    timestamp: str | None,
    signature: str | None,
    body: bytes,
) -> tuple[Deployment, str]:
    """The deployment and the request's signature, or 401. Checks freshness before the HMAC."""
    if not timestamp or not signature or not signature.startswith("sha256="):
        raise NotAuthenticated("missing or malformed signature")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        raise NotAuthenticated("stale or invalid timestamp")
    deployment = await session.get(Deployment, deployment_id)
    # An unknown deployment answers like a bad signature: the endpoint reveals nothing.
    token = callback_token(secret_key, deployment_id, deployment.workflow_id if deployment else "")
    expected = signature_of(token, timestamp, body)
    if not hmac.compare_digest(expected, signature.removeprefix("sha256=")) or deployment is None:
        raise NotAuthenticated("invalid signature")
    return deployment, expected


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """One event or `{"events": [...]}`, each reduced to the whitelisted keys."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed([_err(["body"], "invalid JSON")]) from None
    raw = payload.get("events") if isinstance(payload, dict) and "events" in payload else [payload]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EVENTS:
        raise ValidationFailed([_err(["body", "events"], f"1 to {MAX_EVENTS} events")])
    return [_normalise(index, event) for index, event in enumerate(raw)]


def _err(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value"}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:MAX_TEXT]


def _normalise(index: int, event: Any) -> dict[str, Any]:
    loc = ["body", "events", index]
    if not isinstance(event, dict):
        raise ValidationFailed([_err(loc, "must be an object")])
    counter, name = event.get("counter"), event.get("event")
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 1:
        raise ValidationFailed([_err([*loc, "counter"], "must be a positive integer")])
    if name not in EVENT_NAMES:
        raise ValidationFailed([_err([*loc, "event"], "unknown event")])
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    kept = {
        key: value if key in STRUCTURED_KEYS else _text(value)
        for key, value in data.items()
        if key in DATA_KEYS
    }
    return {
        "counter": counter,
        "uuid": _text(event.get("uuid")),
        "event": name,
        "host": _text(event.get("host")),
        "task": _text(event.get("task")),
        "timestamp": _text(event.get("timestamp")),
        "data": kept,
    }


def _message(event: dict[str, Any]) -> str:
    name, host, task = event["event"], event["host"], event["task"]
    if name == "playbook_on_start":
        return "Playbook started"
    if name == "playbook_on_stats":
        return "Playbook finished"
    if name in ("playbook_on_task_start", "playbook_on_play_start"):
        return f"{'Task' if name.endswith('task_start') else 'Play'}: {task or ''}".strip()
    outcome = name.removeprefix("runner_on_")
    return f"{outcome}: {host or '?'} — {task or ''}".rstrip(" —")


async def store_events(
    session: AsyncSession, deployment: Deployment, signature: str, events: list[dict[str, Any]]
) -> tuple[int, Milestones]:
    """Store new events once each; (rows written, milestones the batch carries).

    A request whose signature was already accepted is a replay: 403, nothing written. Events for
    a finished deployment change nothing."""
    seen = await session.scalar(
        insert(CallbackSignature)
        .values(signature=signature, deployment_id=deployment.id)
        .on_conflict_do_nothing()
        .returning(CallbackSignature.signature)
    )
    if seen is None:
        raise Forbidden("replayed request")
    await session.execute(
        delete(CallbackSignature).where(
            CallbackSignature.received_at
            < func.now() - literal_column(f"interval '{REPLAY_MEMORY_S} seconds'")
        )
    )
    milestones = Milestones()
    if deployment.status in FINAL_STATUSES:
        return 0, milestones
    for event in events:
        if event["event"] == "playbook_on_start":
            milestones.started = {"playbook_uuid": event["uuid"], "at": event["timestamp"]}
        elif event["event"] == "playbook_on_stats":
            milestones.stats = event["data"].get("stats") or {}
    rows = [
        {
            "deployment_id": deployment.id,
            "event_key": f"event:{event['counter']}",
            "status": deployment.status,
            "message": _message(event),
            "details": event,
        }
        for event in events
    ]
    # Rows as parameters, not .values(rows): the statement compiles once and is cached, and is
    # still sent as multi-row INSERTs (a third of the API's CPU went to recompiling it).
    written = await session.execute(
        insert(DeploymentHistory)
        .on_conflict_do_nothing(constraint="deployment_history_event_key")
        .returning(DeploymentHistory.id),
        rows,
    )
    return len(written.all()), milestones


async def failure_reason(session: AsyncSession, deployment_id: int) -> str | None:
    """The first failing host and task of the run, from the stored events."""
    row = (
        await session.execute(
            select(DeploymentHistory.details)
            .where(
                DeploymentHistory.deployment_id == deployment_id,
                DeploymentHistory.event_key.like("event:%"),
                DeploymentHistory.details["event"].astext.in_(FAILING_EVENTS),
                # A failure the playbook chose to ignore is not why the run failed.
                DeploymentHistory.details["data"]["ignore_errors"].astext.is_distinct_from("true"),
            )
            .order_by(DeploymentHistory.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    outcome = "unreachable" if row["event"] == "runner_on_unreachable" else "failed"
    msg = row["data"].get("msg")
    reason = f"task {row['task']!r} {outcome} on {row['host']}"
    return f"{reason}: {msg}" if msg else reason


def stats_ok(stats: dict[str, Any]) -> bool:
    return all(
        not host.get("failures") and not host.get("unreachable")
        for host in stats.values()
        if isinstance(host, dict)
    )
