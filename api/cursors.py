"""Opaque cursors of paginated lists: the id the next page starts below."""

from __future__ import annotations

import base64
import binascii

from api.errors import ValidationFailed
from api.numbers import BIGINT_MAX, ascii_int


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The id a cursor holds: a bigint id in ASCII digits, else 422 (a cursor beyond
    64 bits used to reach PostgreSQL and answer 500)."""
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, ValueError, UnicodeError):
        kind, value = "", ""
    last_id = ascii_int(value, low=0, high=BIGINT_MAX) if kind == "id" else None
    if last_id is None:
        problem = {"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value"}
        raise ValidationFailed([problem])
    return last_id
