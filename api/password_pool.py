"""Argon2 off the event loop: a few threads of its own, and a bound on sign-ins in progress.

A verification takes a quarter of a second of CPU and 64 MiB by design; on the event loop it
stalls every other request for that long. Here it runs on `password_hash_threads` threads
(not the loop's default executor, which other work shares), and at most
`sign_in_max_in_flight` sign-ins are in progress per process: the next ones are refused at once
(503) instead of queueing without end and holding database connections while they wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import TypeVar

from api.errors import DomainError
from api.security import hash_password, verify_password
from settings import Settings

T = TypeVar("T")


class SignInBusy(DomainError):
    status_code = 503
    headers = {"Retry-After": "1"}


class PasswordPool:
    def __init__(self, threads: int, max_in_flight: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        # A threading semaphore, not asyncio's: it is not tied to one event loop.
        self._in_flight = threading.BoundedSemaphore(max(max_in_flight, 1))

    @contextmanager
    def sign_in_slot(self) -> Iterator[None]:
        """Held for a whole sign-in; raises SignInBusy when every slot is taken."""
        if not self._in_flight.acquire(blocking=False):
            raise SignInBusy("too many sign-ins in progress; try again in a second")
        try:
            yield
        finally:
            self._in_flight.release()

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        return await self._run(lambda: verify_password(password, hashed))

    async def hash(self, password: str) -> str:
        return await self._run(lambda: hash_password(password))


@cache
def _pool(threads: int, max_in_flight: int) -> PasswordPool:
    return PasswordPool(threads, max_in_flight)


def password_pool(settings: Settings) -> PasswordPool:
    """The process's pool for these settings (one per process in production)."""
    return _pool(settings.password_hash_threads, settings.sign_in_max_in_flight)
