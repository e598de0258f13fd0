"""Callback tokens and URLs, one per pipeline run, derived from the server secret so nothing
extra is stored.

The trigger activity hands the token to the pipeline; the callback endpoint derives it again to
check the HMAC signature. A token only ever signs callbacks for its own deployment and run: the
run number travels in the URL (`?run=N`), and a request that claims another run fails the
signature check.
"""

from __future__ import annotations

import hashlib
import hmac


def callback_token(secret_key: str, deployment_id: int, workflow_id: str, run: int = 1) -> str:
    message = f"provisio-callback:{deployment_id}:{workflow_id}:{run}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def callback_url(public_url: str, deployment_id: int, run: int) -> str:
    return f"{public_url.rstrip('/')}/api/deployments/{deployment_id}/callback?run={run}"
