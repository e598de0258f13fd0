"""A webhook delivery's parts: who receives an event, one receiver's delivery, and the outcome.

Receivers are named, never given by URL: the delivery activity looks the URL and the secret up
at each attempt, so neither is written into Temporal's history.
"""

# No `from __future__ import annotations`: these dataclasses cross into the workflow sandbox and
# the data converter reads their field types (as in vocabulary/contracts.py).

import enum
from dataclasses import dataclass, field

from vocabulary.notifications import WebhookEvent


class WebhookReceiver(enum.StrEnum):
    OWNER = "owner"  # the deployment's owner's URL (PATCH /api/users/me)
    GLOBAL = "global"  # PROVISIO_WEBHOOK_URL


# A delivery the receiver (or our own rules) refused for good: not tried again.
WEBHOOK_REFUSED = "webhook_refused"
# An attempt that may succeed later (5xx, 408, 429, a timeout, no connection): tried again.
WEBHOOK_UNDELIVERED = "webhook_undelivered"


@dataclass
class WebhookDelivery:
    receiver: WebhookReceiver
    event: WebhookEvent


@dataclass
class WebhookDeliveryResult:
    delivered: list[WebhookReceiver] = field(default_factory=list)
    given_up: list[WebhookReceiver] = field(default_factory=list)
