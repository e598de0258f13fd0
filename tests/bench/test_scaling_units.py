"""The scaling scenario's own parts: its blocks and its lean POST (against a real HTTP server;
the whole scenario runs in `python -m bench --smoke`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.scenarios.scaling import ABBA, LeanClient, _halves, _rate


class _Created(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps(
            {"id": body["n"], "auth": self.headers["Authorization"], "path": self.path}
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Created)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("n", [0, 1, 9, 300])
def test_the_blocks_cover_every_request_in_abba_order(n: int) -> None:
    halves = _halves(n)
    assert sum(halves) == 2 * n
    # Each process count gets the same number, half in each of its blocks.
    for count in set(ABBA):
        assert sum(h for c, h in zip(ABBA, halves, strict=True) if c == count) == n


async def test_lean_posts_on_connections_it_renews(server_url: str) -> None:
    answers: list[dict[str, object]] = []

    async def post(client: LeanClient, i: int) -> None:
        status, body = await client.post("/api/deployments", {"n": i}, {"Authorization": "B t"})
        assert status == 201
        answers.append(json.loads(body))

    done, seconds = await _rate(server_url, 30, 4, post, reconnect_every=3)
    assert done == 30 and seconds > 0
    assert sorted(int(str(a["id"])) for a in answers) == list(range(30))
    assert {(a["auth"], a["path"]) for a in answers} == {("B t", "/api/deployments")}
