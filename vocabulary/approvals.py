"""Approvals: a template that requires one holds each launch in `awaiting_approval`, with the
plan of what it would build, until an admin other than the requester approves or rejects it, or
until the template's `approval_timeout_s` passes (then it is rejected: silence means no).

The plan comes from a check-mode run of the deploy playbook on the deployment's hosts (it checks
the inputs, the hosts' tools and what is already there, and changes nothing) and from the
deployment the workflow validated, which is exactly what an approval then builds.
"""

# No `from __future__ import annotations`: see vocabulary/contracts.py (dataclasses used in the
# workflow sandbox).

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vocabulary.configuration import shown
from vocabulary.disks import DiskSpec
from vocabulary.statuses import DeploymentStatus

# A template that requires approval and says nothing of how long to wait: a week.
DEFAULT_APPROVAL_TIMEOUT_S = 7 * 86400
MAX_APPROVAL_COMMENT = 1000


class ApprovalState(enum.StrEnum):
    PENDING = "pending"  # waiting for a decision (the plan may still be in the making)
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided within the template's approval_timeout_s


@dataclass
class Approval:
    state: ApprovalState
    by: str | None = None
    at: datetime | None = None
    comment: str | None = None


@dataclass
class ApprovalRequest:
    """The approve and reject Updates' input: who decides (never the requester), and why."""

    decided_by_id: int
    decided_by: str
    comment: str | None = None


@dataclass
class ApprovalDecided:
    """The approve and reject Updates' answer: the decision, and the status it moved to."""

    state: ApprovalState
    status: DeploymentStatus


def make_plan(
    disks: list[DiskSpec],
    configuration: dict[str, Any],
    secret_keys: list[str],
    hosts: list[str],
    template: dict[str, Any],
) -> dict[str, Any]:
    """What approving builds: each disk, each configuration value (secrets masked), the hosts
    the check-mode run reached, and the template version it all comes from."""
    return {
        "template": template,
        "hosts": sorted(hosts),
        "disks": [
            {
                "mount_point": disk.mount_point,
                "size_gb": disk.size_gb,
                "filesystem_type": disk.filesystem_type,
                "volume_group": disk.volume_group,
                "logical_volume": disk.logical_volume,
                "disk_type": disk.disk_type,
            }
            for disk in disks
        ],
        "configuration": {
            key: shown(key, value, secret_keys) for key, value in sorted(configuration.items())
        },
    }
