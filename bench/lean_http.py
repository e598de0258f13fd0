"""A minimal keep-alive HTTP/1.1 GET client for the read-path timings.

The read baseline is asyncpg, a client whose protocol code is compiled; timed through httpx, a
GET here carries about 2 ms of httpx's own Python per request (measured against this client on
the same server), several times the SQL it is compared with. This client sends the request bytes
and reads a Content-Length body, nothing more, so what is timed is the API. Only what the read
views answer is supported: no chunked bodies, no redirects, one request at a time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class LeanHTTPError(Exception):
    pass


class LeanHTTP:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of GET `path` on the open connection."""
        assert self._reader is not None and self._writer is not None
        lines = [f"GET {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                raise LeanHTTPError(f"{path}: chunked bodies are not supported")
        if length is None:
            raise LeanHTTPError(f"{path}: no Content-Length")
        return int(status_line.split(" ", 2)[1]), await self._reader.readexactly(length)

    async def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, body = await self.get(path, headers)
        if status != 200:
            raise LeanHTTPError(f"GET {path}: HTTP {status} {body[:200]!r}")
        return json.loads(body)
