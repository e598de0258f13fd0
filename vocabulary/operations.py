"""What may happen to a deployment after it is created: the operations, the statuses each may
start from, and the status moves a deployment may make (the database refuses any other).

The workflow's update validators, the API's 409s, the actions the web UI and the CLI offer,
and `record_step`'s guard all read these tables.
"""

from __future__ import annotations

import enum

from vocabulary.statuses import SETTLED_STATUSES
from vocabulary.statuses import DeploymentStatus as S


class Operation(enum.StrEnum):
    CANCEL = "cancel"
    DESTROY = "destroy"
    RETRY = "retry"


IN_PROGRESS = frozenset({S.PENDING, S.PROVISIONING, S.QUEUED, S.RUNNING})

# The statuses an operation may start from. A cancel while cancelling, or a destroy while
# destroying, is the same operation asked twice: accepted, and nothing new happens.
STARTS_FROM: dict[Operation, frozenset[S]] = {
    Operation.CANCEL: IN_PROGRESS | {S.AWAITING_APPROVAL, S.CANCELLING},
    Operation.DESTROY: SETTLED_STATUSES | {S.DESTROYING},
    Operation.RETRY: frozenset({S.FAILED, S.TIMED_OUT}),
}

# The status an operation moves the deployment to when it starts.
STARTS_AS: dict[Operation, S] = {
    Operation.CANCEL: S.CANCELLING,
    Operation.DESTROY: S.DESTROYING,
    Operation.RETRY: S.PROVISIONING,
}

_HINTS: dict[Operation, str] = {
    Operation.CANCEL: "only a deployment awaiting approval or still being provisioned can be "
    "cancelled",
    Operation.DESTROY: "only a succeeded, failed or timed-out deployment can be destroyed",
    Operation.RETRY: "only a failed or timed-out deployment can be retried",
}


def allowed_operations(status: S) -> list[Operation]:
    """The operations a user may start now, in a stable order (repeats of one in flight not
    included: there is nothing to start)."""
    return [op for op in Operation if status in STARTS_FROM[op] and status != STARTS_AS[op]]


def refusal(operation: Operation, status: S) -> str | None:
    """Why `operation` cannot start from `status`, or None when it can."""
    if status in STARTS_FROM[operation]:
        return None
    return f"the deployment is {status.value.replace('_', ' ')}: {_HINTS[operation]}"


# A change of a deployment that stands (a resize: PATCH /api/deployments/{id}) starts only from
# `succeeded`, and runs as `updating`. Not an `Operation`: those are the POST actions.
CHANGES_START_FROM = frozenset({S.SUCCEEDED})


def change_refusal(status: S) -> str | None:
    """Why a deployment in `status` cannot be changed (resized, reconfigured), or None when it
    can."""
    if status in CHANGES_START_FROM:
        return None
    return (
        f"the deployment is {status.value.replace('_', ' ')}: only a succeeded deployment can "
        "be resized or reconfigured"
    )


# Every status a deployment may move to, and the statuses it may move there from. A step whose
# move is not listed (a late activity, a signal after a cancel) writes its history row and leaves
# the status alone.
ENTERED_FROM: dict[S, frozenset[S]] = {
    S.PENDING: frozenset(),
    # A retry after a failed plan asks for approval again.
    S.AWAITING_APPROVAL: frozenset({S.PENDING, S.PROVISIONING}),
    S.REJECTED: frozenset({S.PENDING, S.AWAITING_APPROVAL}),
    S.PROVISIONING: frozenset({S.PENDING, S.AWAITING_APPROVAL, S.FAILED, S.TIMED_OUT}),
    S.QUEUED: frozenset({S.PENDING, S.PROVISIONING}),
    S.RUNNING: frozenset({S.PENDING, S.PROVISIONING, S.QUEUED}),
    S.SUCCEEDED: IN_PROGRESS | {S.UPDATING},
    # A teardown that fails leaves a failed deployment, to be destroyed or retried.
    S.FAILED: IN_PROGRESS | {S.AWAITING_APPROVAL, S.UPDATING, S.CANCELLING, S.DESTROYING},
    S.TIMED_OUT: IN_PROGRESS | {S.UPDATING},
    S.UPDATING: frozenset({S.SUCCEEDED}),
    S.CANCELLING: IN_PROGRESS | {S.AWAITING_APPROVAL},
    S.CANCELLED: frozenset({S.CANCELLING}),
    S.DESTROYING: SETTLED_STATUSES,
    S.DESTROYED: frozenset({S.DESTROYING}),
}
