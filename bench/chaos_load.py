"""The chaos run's deployments: launched through the API, some cancelled at a random moment,
some destroyed once they settle, each followed until its status is final.

Every request carries an Idempotency-Key and is sent again, with the same key, after a
connection error, a 5xx or a 429, as a careful client does while a part of the stack restarts;
the answers that made it send again are counted by cause. Statuses are read from PostgreSQL by
one connection for every deployment (`StatusBoard`), which reconnects when the server restarts.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from vocabulary.statuses import FINAL_STATUSES, SETTLED_STATUSES

FINAL = frozenset(status.value for status in FINAL_STATUSES)
SETTLED = frozenset(status.value for status in SETTLED_STATUSES)
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class Role(enum.StrEnum):
    KEEP = "keep"  # launched and left to settle
    CANCEL = "cancel"  # cancelled at a random moment after its launch (destroyed if too late)
    DESTROY = "destroy"  # destroyed once it settles


@dataclass
class Tracked:
    index: int
    name: str
    role: Role
    template: str
    cancel_after_s: float = 0.0
    id: int | None = None
    status: str | None = None  # the final status it reached; None while it has not
    answers: dict[str, int] = field(default_factory=dict)  # operation -> HTTP status
    error: str | None = None  # why following it stopped early


class Api:
    """POSTs as the operator, sent again with the same Idempotency-Key until answered."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str], give_up_s: float) -> None:
        self._http = http
        self._headers = headers
        self._give_up_s = give_up_s
        self.resent: Counter[str] = Counter()  # cause -> requests sent again

    async def post(self, path: str, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
        deadline = time.monotonic() + self._give_up_s
        delay = 0.2
        while True:
            try:
                answer = await self._http.post(
                    path, json=body, headers={**self._headers, "Idempotency-Key": key}
                )
                if answer.status_code not in RETRIED_STATUSES:
                    return answer
                cause = str(answer.status_code)
            except httpx.TransportError as exc:
                cause = type(exc).__name__
            self.resent[cause] += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"POST {path}: no answer in {self._give_up_s:.0f}s ({cause})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


class StatusBoard:
    """Every tracked deployment's status, read in one query every `interval_s`."""

    def __init__(self, dsn: str, interval_s: float = 0.5) -> None:
        self._dsn = dsn
        self._interval = interval_s
        self.statuses: dict[int, str] = {}
        # Reads are numbered: a status read by a query that began before an operation was
        # accepted may predate it (`wait_for(..., newer_than=...)`).
        self.round = 0
        self._read_in: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    def watch(self, deployment_id: int) -> None:
        self.statuses.setdefault(deployment_id, "")
        if self._task is None:
            self._task = asyncio.create_task(self._poll())

    async def wait_for(
        self,
        deployment_id: int,
        wanted: frozenset[str],
        expired: Callable[[], bool],
        newer_than: int = 0,
    ) -> str | None:
        """The status once it is one of `wanted`, as read by a query begun after round
        `newer_than`; None when `expired()` says to stop waiting."""
        self.watch(deployment_id)
        while (
            self.statuses.get(deployment_id) not in wanted
            or self._read_in.get(deployment_id, 0) <= newer_than
        ):
            if expired():
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)
            except TimeoutError:
                pass
        return self.statuses[deployment_id]

    async def _poll(self) -> None:
        connection: asyncpg.Connection | None = None
        while True:
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncpg.connect(self._dsn, timeout=5)
                self.round += 1
                this_round = self.round
                rows = await connection.fetch(
                    "SELECT id, status FROM deployments WHERE id = ANY($1::bigint[])",
                    list(self.statuses),
                )
                for row in rows:
                    self.statuses[row["id"]] = row["status"]
                    self._read_in[row["id"]] = this_round
                self._changed.set()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                # PostgreSQL is restarting: read again once it is back.
                self.reconnects += 1
                connection = None
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class Load:
    """Launches `tracked` in order, at most `concurrency` followed at once and no more than the
    launch budget allows, and follows each to the end of its role."""

    api: Api
    board: StatusBoard
    tracked: list[Tracked]
    template_ids: dict[str, int]
    concurrency: int
    run_tag: str
    expired: Callable[[], bool]
    budget: int = 0  # how many may be launched so far (raised as faults complete)
    _budget_raised: asyncio.Event = field(default_factory=asyncio.Event)

    def allow(self, launches: int) -> None:
        self.budget = max(self.budget, min(launches, len(self.tracked)))
        self._budget_raised.set()

    def in_flight(self) -> int:
        """Launched (or being launched) and not yet at the end of its role."""
        return sum(
            1 for d in self.tracked if "launch" in d.answers and d.status is None and not d.error
        )

    async def run(self) -> None:
        queue = iter(self.tracked)

        async def follow_next() -> None:
            for deployment in queue:
                while deployment.index >= self.budget:
                    self._budget_raised.clear()
                    await self._budget_raised.wait()
                try:
                    await self._follow(deployment)
                except Exception as exc:  # reported with the deployment; the others go on
                    deployment.error = f"{type(exc).__name__}: {exc}"

        await asyncio.gather(*(follow_next() for _ in range(self.concurrency)))

    async def _follow(self, d: Tracked) -> None:
        body = {"template_id": self.template_ids[d.template], "deployment_name": d.name}
        d.answers["launch"] = -1  # in flight from here
        answer = await self.api.post("/api/deployments", f"{self.run_tag}-launch-{d.name}", body)
        d.answers["launch"] = answer.status_code
        if answer.status_code != 201:
            raise RuntimeError(f"launch {d.name}: HTTP {answer.status_code} {answer.text[:300]}")
        d.id = int(answer.json()["id"])
        self.board.watch(d.id)
        since = 0  # statuses read by queries begun before the last answer may be stale
        if d.role == Role.CANCEL:
            await asyncio.sleep(d.cancel_after_s)
            accepted = await self._operate(d, "cancel")
            since = self.board.round
            if not accepted:  # it settled first: what is left of it goes by destroy
                settled = await self.board.wait_for(d.id, FINAL, self.expired, since)
                if settled in SETTLED:
                    await self._operate(d, "destroy")
                    since = self.board.round
        elif d.role == Role.DESTROY:
            settled = await self.board.wait_for(d.id, FINAL, self.expired)
            if settled in SETTLED:
                await self._operate(d, "destroy")
                since = self.board.round
        d.status = await self.board.wait_for(d.id, FINAL, self.expired, since)

    async def _operate(self, d: Tracked, operation: str) -> bool:
        """POST the operation; True when accepted (202), False when refused (409)."""
        key = f"{self.run_tag}-{operation}-{d.name}"
        answer = await self.api.post(f"/api/deployments/{d.id}/{operation}", key)
        d.answers[operation] = answer.status_code
        if answer.status_code not in (202, 409):
            raise RuntimeError(f"{operation} {d.name}: HTTP {answer.status_code} {answer.text}")
        return answer.status_code == 202


def plan_deployments(
    n: int, rng: random.Random, templates: list[str], cancel_window_s: float
) -> list[Tracked]:
    """`n` deployments, about 40 % kept, 30 % cancelled and 30 % destroyed, in a random order;
    the sample templates in turn."""
    roles = [Role.KEEP] * n
    cancels, destroys = round(n * 0.3), round(n * 0.3)
    for i in range(cancels):
        roles[i] = Role.CANCEL
    for i in range(cancels, cancels + destroys):
        roles[i] = Role.DESTROY
    rng.shuffle(roles)
    return [
        Tracked(
            index=i,
            name=f"chaos-{i:03d}",
            role=role,
            template=templates[i % len(templates)],
            cancel_after_s=rng.uniform(0, cancel_window_s),
        )
        for i, role in enumerate(roles)
    ]
