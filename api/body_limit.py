"""A cap on request bodies, enforced while they stream in, so no request can exhaust memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vocabulary.callback_events import MAX_BODY_BYTES

DEFAULT_LIMIT = 1024 * 1024
# Callback batches from a busy playbook are larger than any form a person sends; the plugin sizes
# its requests to the same contract.
CALLBACK_LIMIT = MAX_BODY_BYTES


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = CALLBACK_LIMIT if scope["path"].endswith("/callback") else DEFAULT_LIMIT
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        received = 0
        started = answered = False

        async def counted_receive() -> Message:
            # Over the limit: answer 413 here (the app would turn any error into a 400) and
            # tell the app the client left, so it stops reading.
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not answered:
                        answered = True
                        await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is already out
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not answered:
                raise


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body over {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
