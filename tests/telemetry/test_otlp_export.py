"""`provisio api` with PROVISIO_OTLP_ENDPOINT set exports its spans over OTLP/HTTP: the real
process, against a collector stand-in that decodes what it receives (OTLP's own protobuf)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class Collector(ThreadingHTTPServer):
    """Keeps every OTLP trace export it is sent, decoded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.exports: list[tuple[str, ExportTraceServiceRequest]] = []


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.exports.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_the_api_process_exports_its_spans_when_an_endpoint_is_set(
    collector: Collector, database_url: str, temporal_address: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PROVISIO_DATABASE_URL": database_url,
        "PROVISIO_TEMPORAL_ADDRESS": temporal_address,
        "PROVISIO_API_PORT": str(port),
        "PROVISIO_SECRET_KEY": "otlp-test-secret-key-0123456789abcdef-0123",
        "PROVISIO_CALLBACK_SECRET": "otlp-test-callback-secret-0123456789abcdef",
        "PROVISIO_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        # Export at once rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/users/me", timeout=5)
                break
            except httpx.ConnectError:
                assert api.poll() is None, (tmp_path / "api.log").read_text()
                assert time.monotonic() < deadline, "the API did not listen"
                time.sleep(0.2)
        assert response.status_code == 401
        while not collector.exports and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        api.terminate()
        api.wait(30)
        log.close()

    path, request = collector.exports[0]
    assert path == "/v1/traces"
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "provisio-api"
    names = [span.name for scope in resource.scope_spans for span in scope.spans]
    assert "GET /api/users/me" in names
