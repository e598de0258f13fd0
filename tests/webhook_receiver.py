"""A webhook receiver for the tests: real HTTP on a loopback port of its own, answering each
request with the next status of its script, checking signatures as a receiver would (with
`domain.webhook_signing.verify`) and keeping each event once by its id."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from domain.webhook_signing import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)

# In a script: hold the request without answering.
NO_ANSWER = 0
REASONS = {200: "OK", 204: "No Content", 401: "Unauthorized", 404: "Not Found", 500: "Error"}


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    signed: bool  # the signature verified with the receiver's secret


@dataclass
class WebhookReceiverDouble:
    secret: str
    # The status of each request in turn (or NO_ANSWER); past the end, 200.
    script: list[int] = field(default_factory=list)
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    # What a receiver keeps: each accepted event once, by id.
    events: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    # Serving HTTPS, with a certificate for `localhost`.
    tls: bool = False

    @property
    def url(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}/hooks/provisio"
        return f"http://127.0.0.1:{self.port}/hooks/provisio"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            signed = verify(
                self.secret,
                headers.get(TIMESTAMP_HEADER.lower(), ""),
                headers.get(SIGNATURE_HEADER.lower(), ""),
                body,
                time.time(),
            )
            self.requests.append(ReceivedRequest(method, path, headers, body, signed))
            turn = len(self.requests) - 1
            status = self.script[turn] if turn < len(self.script) else 200
            if status == NO_ANSWER:
                await reader.read()  # until the sender gives up and closes the connection
                return
            if not signed:
                status = 401
            if 200 <= status < 300:
                self.events.setdefault(
                    headers[EVENT_ID_HEADER.lower()], (headers[EVENT_HEADER.lower()], body)
                )
            reason = REASONS.get(status, "Status")
            answer = f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(answer.encode())
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def webhook_receiver(
    secret: str, script: list[int] | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[WebhookReceiverDouble]:
    """A receiver listening on 127.0.0.1, on a port the system chose (read back once bound)."""
    receiver = WebhookReceiverDouble(secret, list(script or []), tls=tls is not None)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver
