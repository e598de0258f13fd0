"""A double of the API's callback endpoint: a real HTTP server on 127.0.0.1 that checks what the
Provisio callback plugin sends (signature, timestamp, body shape) and records it.

Not the API: it neither dedupes nor stores. Tests assert on what arrived, duplicates included.
With `forward_to` (the real API's base URL) it is a wire tap instead: each well-signed request is
passed on unchanged and answered with the API's status, so a test sees both what the plugin sent
and what the API stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SKEW_S = 300


@dataclass
class ReceivedRequest:
    path: str
    timestamp: str | None
    signature: str | None
    content_type: str | None
    body: bytes
    signature_ok: bool
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body)["events"])


@dataclass
class CallbackReceiverDouble:
    """Accepts POSTs on registered paths; answers 401 to a bad signature or stale timestamp."""

    tokens: dict[str, str] = field(default_factory=dict)
    # Scripted answers per path, used first to last before answering 202.
    scripted: dict[str, list[int]] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    forward_to: str | None = None
    port: int = 0
    # A socket bound beforehand (say, to be refused on until `start`): served as it is, so the
    # port cannot be taken by anyone else in between.
    sock: socket.socket | None = None
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> CallbackReceiverDouble:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        if self.sock is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        else:
            self._server = ThreadingHTTPServer(
                self.sock.getsockname(), Handler, bind_and_activate=False
            )
            self._server.socket.close()
            self._server.socket = self.sock
            self._server.server_address = self.sock.getsockname()
            self._server.server_activate()
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def url(self, path: str, token: str) -> str:
        with self._lock:
            self.tokens[path] = token
        return f"http://127.0.0.1:{self.port}{path}"

    def _answer(self, path: str, headers: Any, body: bytes) -> int:
        timestamp = headers.get("X-Provisio-Timestamp")
        signature = headers.get("X-Provisio-Signature")
        with self._lock:
            token = self.tokens.get(path)
            signature_ok = bool(
                token is not None
                and timestamp is not None
                and timestamp.isdigit()
                and abs(time.time() - int(timestamp)) <= MAX_SKEW_S
                and signature is not None
                and hmac.compare_digest(signature, expected_signature(token, timestamp, body))
            )
            script = self.scripted.get(path)
            if not signature_ok:
                status = 401
            elif script:
                status = script.pop(0)
            elif self.forward_to is not None:
                # Under the lock, so requests reach the API in the order the plugin sent them.
                status = _forward(self.forward_to + path, headers, body)
            else:
                status = 202
            self.requests.append(
                ReceivedRequest(
                    path=path,
                    timestamp=timestamp,
                    signature=signature,
                    content_type=headers.get("Content-Type"),
                    body=body,
                    signature_ok=signature_ok,
                    status=status,
                )
            )
        return status

    def received(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def accepted_events(self, path: str) -> list[dict[str, Any]]:
        """Events of the requests answered 2xx, in arrival order."""
        return [e for r in self.received(path) if 200 <= r.status < 300 for e in r.events]

    def wait_for_events(self, path: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.accepted_events(path)
            if len(events) >= count:
                return events
            time.sleep(0.05)
        return self.accepted_events(path)


def _forward(url: str, headers: Any, body: bytes) -> int:
    """POST the request on, signature headers and body unchanged; the answer's status."""
    passed_on = ("Content-Type", "X-Provisio-Timestamp", "X-Provisio-Signature")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={name: headers[name] for name in passed_on}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def expected_signature(token: str, timestamp: str, body: bytes) -> str:
    """Computed here independently of the plugin: sha256=HMAC(token, timestamp + "." + body)."""
    digest = hmac.new(token.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
