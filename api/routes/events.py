"""A deployment's history, live, as Server-Sent Events: `GET /api/deployments/{id}/events`.

The stream sends

* `history` events: one per history row, oldest first, `id:` = the row's id, `data:` = the same
  JSON as a row of `GET /api/deployments/{id}/history`;
* `status` events (no `id:`): `{"status", "updated_at", "final"}`, once at the start and at every
  change, always after the history row written with that change;
* `end`, once the status is final and every row is out; then the stream closes. A client that
  reconnects after that with a `Last-Event-ID` and nothing new gets `204 No Content`, which makes
  an `EventSource` stop reconnecting.

It resumes after the id in the `Last-Event-ID` header (or the `after` query parameter, for the
first connection; both ASCII digits, a bigint at most, else 422) and is bounded: a comment line
every `HEARTBEAT_S` of silence, the server closes the stream after `MAX_STREAM_S` (the client
reconnects with its last id), and one user holds at most `max_event_streams_per_user` streams at
once in one API process (the next is 429, `api/stream_slots.py`). Access is
checked like the history endpoint (404 when missing or not yours) at the start and again every
`RECHECK_ACCESS_S`, so a disabled or demoted user, or an expired token, loses the stream too.

No gaps, no duplicates. History ids come from a sequence, and two transactions that insert rows
for the same deployment (a callback batch and a workflow step) may commit in the other order than
they drew their ids: a reader that saw id 21 and moved its cursor past it would skip id 20 when it
commits a moment later, and a client resuming "after 21" would never get it. So a row is sent
only when it is *settled*: every transaction that was in progress when the row first became
visible has ended (`pg_snapshot_xmin` of a later snapshot has passed the `pg_snapshot_xmax` of the
snapshot the row was first seen in). A lower id that commits late is then visible before the
higher one is released, and rows go out in id order. Both numbers are read in the same
REPEATABLE READ snapshot as the rows. A transaction elsewhere that stays open for longer than
`SETTLE_MAX_S` would stall every stream; after that long a row is sent anyway (writers of history
rows hold their transactions for milliseconds).

The endpoint polls PostgreSQL every `POLL_INTERVAL_S` (`db/event_reads.py` reads one snapshot)
with a pooled connection it holds only for the poll, so an open stream holds no connection.
LISTEN/NOTIFY would need a trigger on `deployment_history`; polling one indexed range per second
per viewer is cheap enough here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import CurrentUser, SessionDep, SettingsDep, get_current_user, oauth2_scheme
from api.errors import DomainError, NotFound
from api.numbers import BIGINT_MAX, AsciiDigits, parse_ascii_int
from api.schemas import DeploymentId, HistoryEntry, error_responses
from api.stream_slots import SlotHeldStream, StreamSlots
from db.deployment_reads import deployment_detail
from db.event_reads import Poll, has_rows_after, read_poll
from settings import Settings
from vocabulary.statuses import FINAL_STATUSES

router = APIRouter(tags=["deployments"], responses=error_responses(400, 401, 404, 429))

POLL_INTERVAL_S = 1.0
HEARTBEAT_S = 15.0
MAX_STREAM_S = 300.0
RECHECK_ACCESS_S = 30.0
SETTLE_MAX_S = 10.0
RETRY_MS = 3000


@dataclass
class _Pending:
    row: dict[str, Any]
    seen_xmax: int
    seen_at: float


def sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


@dataclass
class StreamState:
    """The stream's bookkeeping, free of I/O: feed it polls, get SSE chunks back."""

    cursor: int
    pending: dict[int, _Pending] = field(default_factory=dict)
    # (status event, the highest row id visible with it): sent once the cursor has reached it.
    statuses: list[tuple[str, int]] = field(default_factory=list)
    last_status: str | None = None
    final_barrier: int | None = None
    final_seen_at: float | None = None
    ended: bool = False

    def advance(self, poll: Poll, now: float) -> list[str]:
        out: list[str] = []
        for row in poll.rows:
            if row["id"] > self.cursor and row["id"] not in self.pending:
                self.pending[row["id"]] = _Pending(row, poll.xmax, now)
        for row_id in sorted(self.pending):
            waiting = self.pending[row_id]
            if waiting.seen_xmax > poll.xmin and now - waiting.seen_at < SETTLE_MAX_S:
                break  # keep id order: nothing after an unsettled row goes out before it
            entry = HistoryEntry.model_validate(waiting.row).model_dump_json()
            out.append(sse("history", entry, row_id))
            self.cursor = row_id
            del self.pending[row_id]

        final = poll.status in FINAL_STATUSES
        if poll.status != self.last_status:
            self.last_status = poll.status
            payload = {
                "status": poll.status,
                "updated_at": poll.updated_at.isoformat(),
                "final": final,
            }
            self.statuses.append((sse("status", json.dumps(payload)), poll.max_id))
        while self.statuses and self.statuses[0][1] <= self.cursor:
            out.append(self.statuses.pop(0)[0])

        if final and self.final_barrier is None:
            # Callback rows may still be committing alongside the final step: wait them out.
            self.final_barrier, self.final_seen_at = poll.xmax, now
        if (
            self.final_barrier is not None
            and self.final_seen_at is not None
            and (poll.xmin >= self.final_barrier or now - self.final_seen_at >= SETTLE_MAX_S)
            and not self.pending
            and not self.statuses
            and poll.max_id <= self.cursor
        ):
            out.append(sse("end", json.dumps({"status": poll.status})))
            self.ended = True
        return out


async def _can_read(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    token: str | None,
    deployment_id: int,
) -> dict[str, Any] | None:
    """The same checks as the history endpoint: a valid token of an active user who may see
    this deployment. The session is closed before the stream starts."""
    async with sessionmaker() as session:
        try:
            user = await get_current_user(session, settings, token)
        except DomainError:
            return None
        return await deployment_detail(session, user, deployment_id)


async def _stream(
    request: Request,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    token: str | None,
    deployment_id: int,
    cursor: int,
) -> AsyncIterator[str]:
    state = StreamState(cursor=cursor)
    started = last_sent = last_check = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    while not state.ended:
        now = time.monotonic()
        if now - last_check >= RECHECK_ACCESS_S:
            if await _can_read(sessionmaker, settings, token, deployment_id) is None:
                return
            last_check = now
        async with sessionmaker() as session:
            poll = await read_poll(session, deployment_id, state.cursor)
        if poll is None:
            return
        chunks = state.advance(poll, now)
        if chunks:
            yield "".join(chunks)
            last_sent = now
        elif now - last_sent >= HEARTBEAT_S:
            yield ": keep-alive\n\n"
            last_sent = now
        if state.ended or now - started >= MAX_STREAM_S or await request.is_disconnected():
            return
        await asyncio.sleep(POLL_INTERVAL_S)


@router.get(
    "/api/deployments/{deployment_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
        204: {"description": "the deployment is final and the client has every row"},
    },
)
async def deployment_events(
    deployment_id: DeploymentId,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    after: Annotated[
        int | None,
        Query(ge=0, le=BIGINT_MAX, description="history id to start after"),
        AsciiDigits,
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Response:
    """History rows and status changes of one deployment as Server-Sent Events (owner, admin).

    Resumes after `Last-Event-ID` (sent by a reconnecting client), else after `after`."""
    cursor = after or 0
    if last_event_id:
        # Not isdigit()/int(): '²' passed the one and made the other raise (a 500).
        cursor = parse_ascii_int(
            last_event_id,
            loc=["header", "Last-Event-ID"],
            low=0,
            high=BIGINT_MAX,
            what="a history id",
        )

    detail = await deployment_detail(session, user, deployment_id)
    if detail is None:
        raise NotFound("deployment not found")
    if last_event_id and detail["status"] in FINAL_STATUSES:
        if not await has_rows_after(session, deployment_id, cursor):
            return Response(status_code=204)

    # Taken last, so nothing above can fail while the slot is held; the response gives it back.
    slot = StreamSlots.of(request.app, settings.max_event_streams_per_user).take(user.id)
    # The request's session closes when this function returns (SessionDep is function-scoped):
    # the stream takes a pooled connection for each poll only.
    sessionmaker = request.app.state.sessionmaker
    return SlotHeldStream(
        _stream(request, sessionmaker, settings, token, deployment_id, cursor),
        slot,
        media_type="text/event-stream",
        # No caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
