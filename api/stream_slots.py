"""A cap on the live event streams one user holds open at once, per API process.

Each open stream costs a poll of PostgreSQL every second and a task in the API for up to five
minutes, so one user (or one stolen token) must not be able to open thousands. The count lives in
the API process's memory: the stream deliberately holds no database connection between polls, so
a lock or row in PostgreSQL would cost a connection per stream or a write per open and close.
With N API processes behind a balancer a user may hold up to N times the cap.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.errors import DomainError
from telemetry.api_metrics import EVENT_STREAMS_OPEN


class TooManyStreams(DomainError):
    status_code = 429
    headers = {"Retry-After": "5"}


class StreamSlots:
    """Open streams per user id. The API serves on one event loop: no lock is needed."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.open: Counter[int] = Counter()

    @classmethod
    def of(cls, app: Any, per_user: int) -> StreamSlots:
        """The app's slots, made on first use (one per app, so tests' apps do not share)."""
        slots: StreamSlots | None = getattr(app.state, "stream_slots", None)
        if slots is None:
            slots = app.state.stream_slots = cls(per_user)
        return slots

    def take(self, user_id: int) -> Slot:
        if self.open[user_id] >= self.per_user:
            raise TooManyStreams(
                f"too many live streams open ({self.per_user} per user): close another page or "
                "`provisio deployments watch` of yours, or try again shortly"
            )
        self.open[user_id] += 1
        EVENT_STREAMS_OPEN.inc()
        return Slot(self, user_id)

    def _give_back(self, user_id: int) -> None:
        self.open[user_id] -= 1
        EVENT_STREAMS_OPEN.dec()
        if self.open[user_id] <= 0:
            del self.open[user_id]


class Slot:
    """One taken slot; `release` gives it back once, however often it is called."""

    def __init__(self, slots: StreamSlots, user_id: int) -> None:
        self._slots: StreamSlots | None = slots
        self._user_id = user_id

    def release(self) -> None:
        if self._slots is not None:
            self._slots._give_back(self._user_id)
            self._slots = None


class SlotHeldStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends (done, client
    gone, cancelled): the body generator's own `finally` would not run for a stream that was
    never started."""

    def __init__(self, content: Any, slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
