"""How a webhook is signed, and how a receiver checks it: the callback's scheme.

A delivery is a POST of a JSON body `{"id", "type", "occurred_at", "deployment_id", "data"}`
with the headers
    X-Provisio-Event: the type, e.g. deployment.status_changed
    X-Provisio-Event-Id: the id, the same on every attempt (de-duplicate by it)
    X-Provisio-Timestamp: unix seconds at the attempt
    X-Provisio-Signature: sha256=<hex HMAC-SHA256 over timestamp + "." + body>
keyed by the receiver's secret. `verify` is what a receiver runs (standard library only: copy it).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from vocabulary.notifications import WebhookEvent

EVENT_HEADER = "X-Provisio-Event"
EVENT_ID_HEADER = "X-Provisio-Event-Id"
TIMESTAMP_HEADER = "X-Provisio-Timestamp"
SIGNATURE_HEADER = "X-Provisio-Signature"
# A receiver refuses a timestamp further than this from its clock: an old request replayed.
MAX_SKEW_S = 300


def event_body(event: WebhookEvent) -> bytes:
    """The body, the same bytes on every attempt."""
    payload = {
        "id": event.event_id,
        "type": event.event_type.value,
        "occurred_at": event.occurred_at.isoformat(),
        "deployment_id": event.deployment_id,
        "data": event.data,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, event: WebhookEvent, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event.event_type.value,
        EVENT_ID_HEADER: event.event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
    max_skew_s: int = MAX_SKEW_S,
) -> bool:
    """A receiver's check: the headers' timestamp and signature against the raw body, at `now`
    (unix seconds, e.g. time.time())."""
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(now - int(timestamp)) > max_skew_s:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)
