"""Callback tokens and URLs, one per pipeline run, derived from the callback secret
(`PROVISIO_CALLBACK_SECRET`) so nothing extra is stored.

The trigger activity hands the token to the pipeline; the callback endpoint derives it again to
check the HMAC signature. A token only ever signs callbacks for its own deployment and run: the
run number travels in the URL (`?run=N`), and a request that claims another run fails the
signature check.

The callback secret is not the key that signs API tokens (`PROVISIO_SECRET_KEY`): the worker holds
this one to hand tokens out, and must not be able to mint a sign-in for any user.
"""

from __future__ import annotations

import hashlib
import hmac

# Like the API's secret_key: long enough that guessing it is no shortcut past the HMAC.
MIN_SECRET_LENGTH = 32


class CallbackSecretError(ValueError):
    """The process was configured without a usable callback secret."""


def check_callback_secret(callback_secret: str, *, api_secret_key: str | None = None) -> None:
    """Refuse to start without a callback secret, or with the API's own signing key as one."""
    if len(callback_secret) < MIN_SECRET_LENGTH:
        raise CallbackSecretError(
            f"PROVISIO_CALLBACK_SECRET must be at least {MIN_SECRET_LENGTH} characters"
        )
    if api_secret_key is not None and hmac.compare_digest(
        callback_secret.encode(), api_secret_key.encode()
    ):
        raise CallbackSecretError(
            "PROVISIO_CALLBACK_SECRET must differ from PROVISIO_SECRET_KEY: the worker holds it"
        )


def callback_token(callback_secret: str, deployment_id: int, workflow_id: str, run: int = 1) -> str:
    message = f"provisio-callback:{deployment_id}:{workflow_id}:{run}".encode()
    return hmac.new(callback_secret.encode(), message, hashlib.sha256).hexdigest()


def callback_url(public_url: str, deployment_id: int, run: int) -> str:
    return f"{public_url.rstrip('/')}/api/deployments/{deployment_id}/callback?run={run}"
