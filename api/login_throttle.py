"""Slowing password guesses down without letting a guesser lock anyone out.

Every sign-in reserves its attempt here before its password is checked: the attempt is counted
as a failure in a transaction that locks the rows it counts on, so concurrent sign-ins are
counted one after the other and a parallel burst gets no more guesses than a serial one. A
success gives the attempt back. The rows are in PostgreSQL, shared by every API process.

- Per account, an exponential backoff: `login_free_failures` failures in a row cost no wait,
  then each attempt must wait twice as long as the one before, up to `login_backoff_max_s` (a
  minute): a guesser gets about a guess a minute, and the user is never locked out for long.
- Per client address, `login_client_max_failures` failures per window (one address guessing
  many accounts); the address honours `trusted_proxies` (api/client_address.py).
- An address that signed in as a user within `login_known_client_s` has a backoff of its own
  for that user: a guesser hammering the account from elsewhere keeps the account's backoff at
  its cap, and the user, from where they signed in before, is not held by it at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from api.errors import DomainError
from db.models import LoginFailure, LoginScope
from settings import Settings

PRUNE_BATCH = 20


class TooManySignIns(DomainError):
    status_code = 429

    def __init__(self, reason: str, wait: timedelta) -> None:
        seconds = max(1, math.ceil(wait.total_seconds()))
        super().__init__(f"too many failed sign-ins {reason}; try again in {seconds} s")
        self.headers = {"Retry-After": str(seconds)}


@dataclass(frozen=True)
class Key:
    scope: LoginScope
    username: str = ""
    client: str = ""

    def matches(self) -> ColumnElement[bool]:
        return and_(
            LoginFailure.scope == self.scope.value,
            LoginFailure.username == self.username,
            LoginFailure.client == self.client,
        )


@dataclass(frozen=True)
class Reservation:
    """An attempt counted as failed, with the backoff it was counted against."""

    client: Key
    backoff: Key
    username: str
    address: str


def backoff(failures: int, settings: Settings) -> timedelta:
    """How long an account waits after its `failures`-th failure in a row."""
    beyond_free = failures - settings.login_free_failures
    if beyond_free < 0:
        return timedelta(0)
    # The exponent is capped so a long siege cannot overflow the float.
    seconds = settings.login_backoff_base_s * 2 ** min(beyond_free, 32)
    return timedelta(seconds=min(seconds, settings.login_backoff_max_s))


async def reserve_attempt(
    session: AsyncSession, username: str, address: str, settings: Settings
) -> Reservation:
    """Count this attempt as failed, or raise TooManySignIns (nothing counted then).

    The caller commits before checking the password, so the count holds whatever happens next.
    """
    username = username[:255]
    conn = await session.connection()  # Core statements: no unit of work needed
    await _prune_expired(conn)  # before locking: it must not delete a row this attempt holds
    client = Key(LoginScope.CLIENT, client=address)
    await _count_for_client(conn, client, settings)
    known = Key(LoginScope.KNOWN_CLIENT, username=username, client=address)
    backoff_key = known if await _is_known(conn, known, settings) else None
    backoff_key = backoff_key or Key(LoginScope.ACCOUNT, username=username)
    await _count_for_backoff(conn, backoff_key, settings)
    return Reservation(client, backoff_key, username, address)


async def record_success(
    session: AsyncSession, reservation: Reservation, settings: Settings
) -> None:
    """The attempt was right: give the address its attempt back, start the backoff it was
    counted against again, and remember that this address signs in as this user."""
    conn = await session.connection()
    await conn.execute(
        update(LoginFailure)
        .where(reservation.client.matches())
        .values(failures=func.greatest(LoginFailure.failures - 1, 0))
    )
    if reservation.backoff.scope is LoginScope.ACCOUNT:
        await conn.execute(delete(LoginFailure).where(reservation.backoff.matches()))
    known_until = func.now() + timedelta(seconds=settings.login_known_client_s)
    fresh = {"failures": 0, "blocked_until": func.now(), "succeeded_at": func.now()}
    await conn.execute(
        insert(LoginFailure)
        .values(
            scope=LoginScope.KNOWN_CLIENT.value,
            username=reservation.username,
            client=reservation.address,
            expires_at=known_until,
            **fresh,
        )
        .on_conflict_do_update(
            index_elements=[LoginFailure.scope, LoginFailure.username, LoginFailure.client],
            set_={**fresh, "expires_at": func.greatest(LoginFailure.expires_at, known_until)},
        )
    )


async def _count_for_client(conn: AsyncConnection, key: Key, settings: Settings) -> None:
    row = await _lock(conn, key)
    now = row.now
    window = timedelta(seconds=settings.login_failure_window_s)
    started, failures = row.window_started_at, row.failures
    if now >= started + window:
        started, failures = now, 0
    if failures >= settings.login_client_max_failures:
        raise TooManySignIns("from this address", started + window - now)
    await conn.execute(
        update(LoginFailure)
        .where(key.matches())
        .values(failures=failures + 1, window_started_at=started, expires_at=started + window)
    )


async def _count_for_backoff(conn: AsyncConnection, key: Key, settings: Settings) -> None:
    row = await _lock(conn, key)
    now = row.now
    if row.blocked_until > now:
        raise TooManySignIns("for this account", row.blocked_until - now)
    window = timedelta(seconds=settings.login_failure_window_s)
    # Failures are forgotten after a quiet window.
    failures = 0 if now >= row.blocked_until + window else row.failures
    failures += 1
    blocked_until = now + backoff(failures, settings)
    await conn.execute(
        update(LoginFailure)
        .where(key.matches())
        .values(
            failures=failures,
            blocked_until=blocked_until,
            expires_at=max(row.expires_at, blocked_until + window),
        )
    )


@dataclass(frozen=True)
class Counts:
    failures: int
    blocked_until: datetime
    window_started_at: datetime
    expires_at: datetime
    now: datetime  # the database's clock, the one every API process shares


async def _lock(conn: AsyncConnection, key: Key) -> Counts:
    """The key's row, created if missing and locked until the transaction ends (concurrent
    attempts on the same key wait here)."""
    statement = (
        insert(LoginFailure)
        .values(scope=key.scope.value, username=key.username, client=key.client)
        # A no-op update: ON CONFLICT DO UPDATE locks the existing row and returns it.
        .on_conflict_do_update(
            index_elements=[LoginFailure.scope, LoginFailure.username, LoginFailure.client],
            set_={"scope": key.scope.value},
        )
        .returning(
            LoginFailure.failures,
            LoginFailure.blocked_until,
            LoginFailure.window_started_at,
            LoginFailure.expires_at,
            # The time once the lock is held, not the transaction's start: a wait for the lock
            # must not count as time already waited.
            func.clock_timestamp(),
        )
    )
    return Counts(*(await conn.execute(statement)).one())


async def _is_known(conn: AsyncConnection, key: Key, settings: Settings) -> bool:
    since = func.now() - timedelta(seconds=settings.login_known_client_s)
    known = await conn.scalar(
        select(exists().where(key.matches(), LoginFailure.succeeded_at > since))
    )
    return bool(known)


async def _prune_expired(conn: AsyncConnection) -> None:
    """A few rows that say nothing any more, so the table does not grow with every username and
    address ever tried; rows another sign-in holds are skipped."""
    pk = tuple_(LoginFailure.scope, LoginFailure.username, LoginFailure.client)
    expired = (
        select(LoginFailure.scope, LoginFailure.username, LoginFailure.client)
        .where(LoginFailure.expires_at < func.now())
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    await conn.execute(delete(LoginFailure).where(pk.in_(expired)))
