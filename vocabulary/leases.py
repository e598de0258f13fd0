"""A deployment's lease: until when it lives, the warnings before its end, and who may move it.

Pure and free of I/O: the workflow (inside its sandbox), the API and the template rules share it.
"""

# No `from __future__ import annotations`: Lease crosses the wire in DeploymentState (see
# vocabulary/contracts.py).

from dataclasses import dataclass
from datetime import datetime, timedelta

from vocabulary.operations import IN_PROGRESS
from vocabulary.statuses import SETTLED_STATUSES
from vocabulary.statuses import DeploymentStatus as S

# Warnings before the end of a lease when the template names none: a day, then an hour before.
DEFAULT_LEASE_WARNINGS_S = (24 * 3600, 3600)
# The longest lease a template may set or allow (a year), and how many warnings it may ask for.
MAX_LEASE_S = 365 * 24 * 3600
MAX_LEASE_WARNINGS = 8
# A lease is extended while the deployment lives on (being provisioned, settled, or updating: a
# resize runs); not while it is being taken down.
EXTENDABLE_FROM = IN_PROGRESS | SETTLED_STATUSES | {S.UPDATING}


def extension_refusal(status: S) -> str | None:
    """Why a deployment in `status` cannot have its lease extended (the API's 409), or None."""
    if status in EXTENDABLE_FROM:
        return None
    return (
        f"the deployment is {status.value.replace('_', ' ')}: a lease cannot be extended while"
        " the deployment is being cancelled or destroyed, nor once it has ended"
    )


@dataclass
class Lease:
    """A deployment's lease as its workflow holds it (and carries across continue-as-new)."""

    expires_at: datetime
    # The longest a lease may reach from the moment it is extended.
    max_s: int
    # Warnings not yet given, in seconds before `expires_at`, largest first.
    warnings_pending: list[int]
    # Extensions so far: each one's history row has a key of its own.
    extensions: int = 0


def pending_warnings(expires_at: datetime, warnings_s: list[int], now: datetime) -> list[int]:
    """The warnings still to come, largest first: one whose time has already passed when the lease
    is set (a 30-minute lease and the one-hour warning) is not given at all."""
    return sorted({w for w in warnings_s if expires_at - timedelta(seconds=w) > now}, reverse=True)


def extension_error(
    lease: Lease, now: datetime, extend_s: int | None, expires_at: datetime | None
) -> tuple[str, str] | None:
    """(field, why) when the asked extension is refused (the API's 422), else None."""
    field = "extend_s" if extend_s is not None else "expires_at"
    wanted = new_expiry(lease, extend_s, expires_at)
    limit = now + timedelta(seconds=lease.max_s)
    if wanted <= lease.expires_at:
        return field, (
            f"must move the expiry later than it is ({lease.expires_at.isoformat()}); "
            "to end the deployment sooner, destroy it"
        )
    if wanted > limit:
        return field, (
            f"would end the lease at {wanted.isoformat()}, past this template's max_lease_s "
            f"({lease.max_s}s from now, {limit.isoformat()})"
        )
    return None


def new_expiry(lease: Lease, extend_s: int | None, expires_at: datetime | None) -> datetime:
    """The expiry an extension asks for: `extend_s` after the current one, or `expires_at`."""
    if extend_s is not None:
        return lease.expires_at + timedelta(seconds=extend_s)
    assert expires_at is not None, "an extension names extend_s or expires_at"
    return expires_at


def describe_seconds(seconds: int) -> str:
    """A duration as people say it in a history row: "24 h", "90 min", "45 s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 2 * 86400):
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
