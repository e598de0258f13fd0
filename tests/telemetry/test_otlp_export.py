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


def serve_api(env: dict[str, str], log_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`provisio api` answering on a free port; another port if the one picked was taken
    meanwhile (uvicorn then exits, saying so)."""
    for _ in range(3):
        port = free_port()
        with log_file.open("wb") as log:
            api = subprocess.Popen(
                [sys.executable, "-m", "cli", "api"],
                cwd=REPO,
                env={**env, "PROVISIO_API_PORT": str(port)},
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while api.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
                return api, port
            except httpx.ConnectError:
                time.sleep(0.2)
        api.terminate()
        api.wait(30)
        if "address already in use" not in log_file.read_text():
            break
    raise AssertionError(f"the API did not serve: {log_file.read_text()}")


def test_the_api_process_exports_its_spans_when_an_endpoint_is_set(
    collector: Collector, database_url: str, temporal_address: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PROVISIO_DATABASE_URL": database_url,
        "PROVISIO_TEMPORAL_ADDRESS": temporal_address,
        "PROVISIO_SECRET_KEY": "otlp-test-secret-key-0123456789abcdef-0123",
        "PROVISIO_CALLBACK_SECRET": "otlp-test-callback-secret-0123456789abcdef",
        "PROVISIO_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        # Export at once rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    api, port = serve_api(env, tmp_path / "api.log")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/users/me", timeout=5)
        assert response.status_code == 401
        deadline = time.monotonic() + 30
        while not any(_names(request) & {"GET /api/users/me"} for _, request in collector.exports):
            assert time.monotonic() < deadline, "no span exported"
            time.sleep(0.1)
    finally:
        api.terminate()
        api.wait(30)

    path, request = next(
        (path, request)
        for path, request in collector.exports
        if "GET /api/users/me" in _names(request)
    )
    assert path == "/v1/traces"
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "provisio-api"


def _names(request: ExportTraceServiceRequest) -> set[str]:
    return {
        span.name
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
