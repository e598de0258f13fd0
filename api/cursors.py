"""Opaque cursors of paginated lists: the id the next page starts below."""

from __future__ import annotations

import base64

from api.errors import ValidationFailed


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "id" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValidationFailed([{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value"}])
