"""The bench-only pipeline runner: a run that completes at once.

`trigger` starts nothing; right after it returns, a sender thread plays the callback plugin's
part for a run with no tasks: it POSTs `playbook_on_start` and then the final
`playbook_on_stats`, each signed with the deployment's callback token, to the real callback
endpoint over HTTP. The workflow therefore goes through every step a real run takes (both
milestone signals included) with no playbook time in between.

Deployments whose name starts with HOLD_PREFIX get no callback: they stay `queued`, for the
launch-latency and callback-ingestion scenarios, which drive them themselves.

Used only by the bench's own worker process (`bench.worker`); never registered in
`pipeline/factory.py`, so no product setting can select it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.events import event, host_stats, signed_request
from pipeline.runner import PipelineRequest, RunRef, RunState, RunStatus

HOLD_PREFIX = "hold-"
log = logging.getLogger("bench.runner")


class BenchRunner:
    def __init__(self, *, sender_threads: int = 8, attempts: int = 20) -> None:
        self._runs: dict[int, RunRef] = {}
        self._states: dict[str, RunStatus] = {}
        self._lock = threading.Lock()
        self._attempts = attempts
        self._sender = ThreadPoolExecutor(sender_threads, thread_name_prefix="bench-callback")
        self._http = httpx.Client(
            timeout=30,
            # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them.
            limits=httpx.Limits(max_connections=sender_threads * 2, keepalive_expiry=2.0),
        )

    def find_run(self, deployment_id: int) -> RunRef | None:
        with self._lock:
            return self._runs.get(deployment_id)

    def trigger(self, request: PipelineRequest) -> RunRef:
        ref = RunRef(job_id=f"bench-{request.deployment_id}")
        name = str(request.variables.get("provisio_deployment", {}).get("name", ""))
        with self._lock:
            self._runs[request.deployment_id] = ref
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
        self._http.close()

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

    def _post(self, request: PipelineRequest, batch: list[dict[str, object]]) -> None:
        """Deliver one batch, retrying what the plugin retries (connection errors, 5xx, 429)."""
        delay = 0.05
        for attempt in range(1, self._attempts + 1):
            body, headers = signed_request(request.callback_token, batch)
            try:
                response = self._http.post(request.callback_url, content=body, headers=headers)
            except httpx.TransportError:
                if attempt == self._attempts:
                    raise
            else:
                if response.status_code < 300:
                    return
                if response.status_code < 500 and response.status_code != 429:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                if attempt == self._attempts:
                    response.raise_for_status()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
