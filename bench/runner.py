"""The bench-only pipeline runner: a run that completes at once.

`trigger` starts nothing; right after it returns, a sender thread plays the callback plugin's
part for a run with no tasks: it POSTs `playbook_on_start` and then the final
`playbook_on_stats`, each signed with the deployment's callback token, to the real callback
endpoint over HTTP. The workflow therefore goes through every step a real run takes (both
milestone signals included) with no playbook time in between.

Deployments whose name starts with HOLD_PREFIX get no callback: they stay `queued`, for the
launch-latency and callback-ingestion scenarios, which drive them themselves.

It sends with the standard library (as the plugin does), over one keep-alive connection per
sender thread: httpx costs several times more CPU per request, and this runner's CPU counts in
the worker's figures although no product code runs it.

Used only by the bench's own worker process (`bench.worker`); never registered in
`pipeline/factory.py`, so no product setting can select it.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar
from urllib.parse import urlsplit

from bench.events import event, host_stats, signed_request
from pipeline.runner import PipelineRequest
from vocabulary.runs import RunRef, RunState, RunStatus

HOLD_PREFIX = "hold-"
log = logging.getLogger("bench.runner")


class BenchRunner:
    host_bound: ClassVar[bool] = False

    def __init__(self, *, sender_threads: int = 8, attempts: int = 20) -> None:
        self._runs: dict[tuple[int, int], RunRef] = {}
        self._states: dict[str, RunStatus] = {}
        self._lock = threading.Lock()
        self._attempts = attempts
        self._sender = ThreadPoolExecutor(sender_threads, thread_name_prefix="bench-callback")
        self._local = threading.local()  # each sender thread's connection and its last use

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        with self._lock:
            return self._runs.get((deployment_id, run))

    def trigger(self, request: PipelineRequest) -> RunRef:
        ref = RunRef(job_id=f"bench-{request.deployment_id}-{request.run}")
        name = str(request.variables.get("provisio_deployment", {}).get("name", ""))
        with self._lock:
            self._runs[(request.deployment_id, request.run)] = ref
            self._states[ref.job_id] = RunStatus(RunState.RUNNING)
        if not name.startswith(HOLD_PREFIX):
            self._sender.submit(self._complete, request, ref)
        return ref

    def status(self, ref: RunRef) -> RunStatus:
        with self._lock:
            return self._states.get(ref.job_id, RunStatus(RunState.MISSING))

    def cancel(self, ref: RunRef) -> None:
        with self._lock:
            self._states[ref.job_id] = RunStatus(RunState.ABORTED, reason="cancelled")

    def close(self) -> None:
        self._sender.shutdown(wait=False, cancel_futures=True)

    # -- the run's callback ------------------------------------------------------------------

    def _complete(self, request: PipelineRequest, ref: RunRef) -> None:
        stats = host_stats(1, 0)
        batches = [
            [event(1, "playbook_on_start", data={"playbook": "bench-noop.yml"})],
            [event(2, "playbook_on_stats", data={"stats": stats, "total_events": 2})],
        ]
        try:
            for batch in batches:
                self._post(request, batch)
            final = RunStatus(RunState.SUCCEEDED, stats=stats)
        except Exception as exc:  # the workflow learns it from `status` and fails the run
            log.exception("bench callback for deployment %s failed", request.deployment_id)
            final = RunStatus(RunState.FAILED, reason=f"bench callback failed: {exc!r}")
        with self._lock:
            self._states[ref.job_id] = final

    def _send(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        parts = urlsplit(url)
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them.
        if conn is not None and time.monotonic() - self._local.used > 2.0:
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
            self._local.conn = conn
        try:
            # The query names the run (`?run=N`): a teardown's events are run 2's.
            target = f"{parts.path}?{parts.query}" if parts.query else parts.path
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.status, response.read()
        except Exception:
            conn.close()
            self._local.conn = None
            raise
        self._local.used = time.monotonic()
        return answer

    def _post(self, request: PipelineRequest, batch: list[dict[str, object]]) -> None:
        """Deliver one batch, retrying what the plugin retries (connection errors, 5xx, 429)."""
        delay = 0.05
        for attempt in range(1, self._attempts + 1):
            body, headers = signed_request(request.callback_token, batch)
            try:
                status, text = self._send(request.callback_url, body, headers)
            except (OSError, http.client.HTTPException):
                if attempt == self._attempts:
                    raise
            else:
                if status < 300:
                    return
                if (status < 500 and status != 429) or attempt == self._attempts:
                    raise RuntimeError(f"HTTP {status}: {text[:200]!r}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
