"""Waiting for deployments to settle, now that a deployment's workflow lives on after
`succeeded` (its result comes only when the deployment is gone).

One asyncpg connection reads the status of every deployment still awaited, every POLL_S, and
wakes each waiter when its deployment settles: one cheap query per interval whatever the number
of waiters, and nothing added to the workflows' histories or the Temporal server's work (a query
per waiter would be)."""

from __future__ import annotations

import asyncio

import asyncpg

from vocabulary.statuses import FINAL_STATUSES

POLL_S = 0.02
_FINAL = sorted(status.value for status in FINAL_STATUSES)


class SettleWatcher:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiting: dict[int, asyncio.Future[str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def settled(self, deployment_id: int) -> str:
        """The status the deployment settles (or ends) in."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[deployment_id] = future
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        return await future

    async def _watch(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            while self._waiting:
                rows = await connection.fetch(
                    "SELECT id, status FROM deployments"
                    " WHERE id = ANY($1::bigint[]) AND status = ANY($2::text[])",
                    list(self._waiting),
                    _FINAL,
                )
                for row in rows:
                    future = self._waiting.pop(row["id"])
                    if not future.done():
                        future.set_result(row["status"])
                await asyncio.sleep(POLL_S)
        finally:
            await connection.close()
