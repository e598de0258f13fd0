"""A user's own webhook (PATCH /api/users/me): set, rotate or remove its URL and secret.

A new secret is made whenever a URL is set or the secret rotated, and answered once: it is
stored to sign with, but never shown again. The URL's form is checked by its schema; its
addresses here, after DNS, against `webhook_allow_private` (the worker checks them again at
every delivery, since a name may resolve elsewhere later).
"""

from __future__ import annotations

import secrets

from api.errors import ValidationFailed
from api.schemas import UserMeUpdate
from db.models import User
from domain.webhook_urls import WebhookAddressError, resolve_receiver


async def change_webhook(user: User, change: UserMeUpdate, *, allow_private: bool) -> str | None:
    """Apply the change to the user's row; the new secret, when one was made."""
    url_given = "webhook_url" in change.model_fields_set
    if url_given and change.webhook_url is None:
        if change.rotate_webhook_secret:
            raise _invalid("rotate_webhook_secret", "there is no secret to rotate without a URL")
        user.webhook_url = user.webhook_secret = None
        return None
    if change.webhook_url is not None:
        try:
            await resolve_receiver(change.webhook_url, allow_private=allow_private)
        except WebhookAddressError as exc:
            raise _invalid("webhook_url", str(exc)) from None
        user.webhook_url = change.webhook_url
    elif not change.rotate_webhook_secret:
        return None
    elif user.webhook_url is None:
        raise _invalid("rotate_webhook_secret", "there is no webhook URL to rotate the secret of")
    secret = secrets.token_urlsafe(32)
    user.webhook_secret = secret
    return secret


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", field], "msg": message, "type": "webhook"}])
