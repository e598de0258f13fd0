"""Per-deployment callback tokens, derived from the server secret so nothing extra is stored.

The trigger activity hands the token to the pipeline; the callback endpoint derives it again to
check the HMAC signature. A token only ever signs callbacks for its own deployment.
"""

from __future__ import annotations

import hashlib
import hmac


def callback_token(secret_key: str, deployment_id: int, workflow_id: str) -> str:
    message = f"provisio-callback:{deployment_id}:{workflow_id}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()
