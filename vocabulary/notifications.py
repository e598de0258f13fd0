"""Outgoing webhooks: what DeployWorkflow tells receivers, and how a delivery is named.

The deployment's workflow marks the steps worth telling (`RecordStepInput.notify`); the
`record_step` activity answers whether anyone listens (the owner's webhook URL or the global one),
and only then does the workflow start a `WebhookDeliveryWorkflow` child for the event, abandoned
on close, so a slow or dead receiver never holds the deployment up and a delivery outlives the
deployment's own workflow (the last event, `destroyed`, is sent after it ended).

An event's id is the deployment's id and its history row's key: the same on every attempt, so a
receiver de-duplicates by it, and unique, so it also names the delivery's workflow.
"""

# No `from __future__ import annotations`: see vocabulary/contracts.py (dataclasses used in the
# workflow sandbox).

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class WebhookEventType(enum.StrEnum):
    STATUS_CHANGED = "deployment.status_changed"
    LEASE_WARNING = "deployment.lease_warning"
    LEASE_EXPIRED = "deployment.lease_expired"


@dataclass
class WebhookEvent:
    """One event for the receivers. `data` is JSON, secrets already masked: it is the body's
    `data` as is, and it is kept in Temporal's history."""

    event_id: str
    event_type: WebhookEventType
    deployment_id: int
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


def webhook_event_id(deployment_id: int, event_key: str) -> str:
    return f"{deployment_id}:{event_key}"


def webhook_workflow_id(event_id: str) -> str:
    return f"webhook-{event_id}"
