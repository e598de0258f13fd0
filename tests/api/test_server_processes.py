"""`provisio api` with two processes: one port answered by both, one /metrics for both, and no
process left once it is stopped (or killed). The real command, its real processes.

Which process answered a request is read from the metrics files prometheus_client's multiprocess
mode writes, one set per process id: each process's own file, read alone, holds the requests that
process timed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
DURATION = "provisio_http_request_duration_seconds"
ROUTE = "/openapi.json"


def requests_timed(text: str) -> float:
    """The requests a Prometheus exposition counts, scrapes of /metrics aside."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == DURATION
        for sample in family.samples
        if sample.name == f"{DURATION}_count" and sample.labels.get("route") != "/metrics"
    )


def requests_timed_by(metrics_dir: Path, pid: int, scratch: Path) -> float:
    """The requests process `pid` timed, from its own histogram file alone."""
    alone = scratch / str(pid)
    alone.mkdir(parents=True, exist_ok=True)
    shutil.copy(metrics_dir / f"histogram_{pid}.db", alone / f"histogram_{pid}.db")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(alone))
    return requests_timed(generate_latest(registry).decode())


def serving_processes(supervisor: psutil.Process) -> list[psutil.Process]:
    """The processes uvicorn's supervisor spawned to serve (multiprocessing's spawn children)."""
    found = []
    for child in supervisor.children():
        try:
            # Not multiprocessing's resource tracker: the processes it spawned to serve.
            if "--multiprocessing-fork" in child.cmdline():
                found.append(child)
        except psutil.Error:  # ended meanwhile
            continue
    return found


@pytest.fixture
def api_env(database_url: str, temporal_address: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # Left by an earlier run: must not be counted with this one. Not prometheus_client's: kept.
    (metrics_dir / "counter_999999.db").write_bytes(b"\0" * 16)
    (metrics_dir / "README").write_text("not a metrics file")
    yield {
        **os.environ,
        "PROVISIO_DATABASE_URL": database_url,
        "PROVISIO_TEMPORAL_ADDRESS": temporal_address,
        "PROVISIO_SECRET_KEY": "processes-test-secret-key-0123456789abcdef",
        "PROVISIO_CALLBACK_SECRET": "processes-test-callback-secret-0123456789ab",
        "PROVISIO_API_PROCESSES": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def start_api(env: dict[str, str], log_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`provisio api` answering on a free port; another port if the one picked was taken."""
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
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while api.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/openapi.json", timeout=5)
                return api, url
            except httpx.TransportError:
                time.sleep(0.2)
        stop(api)
        if "address already in use" not in log_file.read_text():
            break
    raise AssertionError(f"the API did not serve: {log_file.read_text()}")


def stop(api: subprocess.Popen[bytes]) -> None:
    if api.poll() is None:
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


def two_serving(api: subprocess.Popen[bytes], timeout_s: float = 60) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while len(found := serving_processes(psutil.Process(api.pid))) < 2:
        assert time.monotonic() < deadline, "two processes did not start"
        time.sleep(0.2)
    return found


def test_one_port_is_served_by_both_processes_and_metrics_answer_for_both(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    metrics_dir = Path(api_env["PROMETHEUS_MULTIPROC_DIR"])
    api, url = start_api(api_env, tmp_path / "api.log")
    try:
        children = two_serving(api)
        assert not (metrics_dir / "counter_999999.db").exists()
        assert (metrics_dir / "README").exists()
        pids = {child.pid for child in children}

        # A new connection each time: the kernel hands each to whichever process accepts it.
        sent = 0
        by_pid: dict[int, float] = {}
        while sent < 600:
            for _ in range(20):
                assert httpx.get(f"{url}{ROUTE}", timeout=10).status_code == 200
                sent += 1
            by_pid = {
                pid: requests_timed_by(metrics_dir, pid, tmp_path / "alone")
                for pid in pids
                if (metrics_dir / f"histogram_{pid}.db").exists()
            }
            if len(by_pid) == 2 and all(by_pid.values()):
                break
        assert set(by_pid) == pids and all(by_pid.values()), by_pid

        # One scrape, whichever process answers it, counts every process's requests (ours,
        # and the probes that waited for the port).
        by_pid = {pid: requests_timed_by(metrics_dir, pid, tmp_path / "alone") for pid in pids}
        counted = requests_timed(httpx.get(f"{url}/metrics", timeout=10).text)
        assert counted == sum(by_pid.values()) >= sent
    finally:
        stop(api)
    assert api.returncode == 0, (tmp_path / "api.log").read_text()[-3000:]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{ROUTE}", timeout=5)


def test_processes_stop_when_their_supervisor_is_killed(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    api, _ = start_api(api_env, tmp_path / "api.log")
    children: list[psutil.Process] = []
    try:
        children = two_serving(api)
        os.kill(api.pid, signal.SIGKILL)  # no chance to stop them itself
        api.wait(10)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [child.cmdline() for child in alive]
    finally:
        stop(api)
        for child in serving_processes_left(children):
            child.kill()


def serving_processes_left(children: list[psutil.Process]) -> list[psutil.Process]:
    return [child for child in children if child.is_running()]
