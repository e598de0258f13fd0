"""Callback-plugin events as the plugin sends them, signed like the plugin signs them."""

from __future__ import annotations

import json
import time
from typing import Any

from api.callback_ingest import signature_of


def event(
    counter: int, name: str, host: str | None = None, task: str | None = None, **data: Any
) -> dict[str, Any]:
    return {
        "counter": counter,
        "uuid": f"uuid-{counter}",
        "event": name,
        "host": host,
        "task": task,
        "timestamp": "2026-11-26T12:00:00Z",
        "data": data,
    }


def signed(
    token: str, payload: Any, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one signed callback request."""
    body = json.dumps(payload).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Provisio-Timestamp": ts,
        "X-Provisio-Signature": "sha256=" + signature_of(token, ts, body),
    }
    return body, headers
