"""A deployment's statuses, which of them end an operation, and the statuses of history rows."""

from __future__ import annotations

import enum


class DeploymentStatus(enum.StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    PROVISIONING = "provisioning"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    UPDATING = "updating"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    REJECTED = "rejected"

    @property
    def is_settled(self) -> bool:
        """An operation ended here and another may start (destroy, retry, change)."""
        return self in SETTLED_STATUSES

    @property
    def is_terminal(self) -> bool:
        """Nothing is left on any host and nothing moves again."""
        return self in TERMINAL_STATUSES

    @property
    def is_final(self) -> bool:
        """The current operation is over: settled or terminal."""
        return self in FINAL_STATUSES


S = DeploymentStatus
SETTLED_STATUSES = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT})
TERMINAL_STATUSES = frozenset({S.CANCELLED, S.DESTROYED, S.REJECTED})
FINAL_STATUSES = SETTLED_STATUSES | TERMINAL_STATUSES
# The steps of provisioning, in order: within it a status never moves to an earlier one.
PROVISIONING_ORDER = (S.PENDING, S.PROVISIONING, S.QUEUED, S.RUNNING)


def status_rank(status: DeploymentStatus) -> int:
    """Position in PROVISIONING_ORDER; every final status ranks after all of it."""
    if status.is_final:
        return len(PROVISIONING_ORDER)
    return PROVISIONING_ORDER.index(status)


class HistoryStatus(enum.StrEnum):
    """What a history row says happened. The seed's first row is ('created', 'Deployment
    created'); every later row carries the deployment's status when it was written."""

    CREATED = "created"


HISTORY_STATUSES = (HistoryStatus.CREATED.value, *(status.value for status in DeploymentStatus))
