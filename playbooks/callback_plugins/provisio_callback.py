# Provisio: sends a playbook's events, signed, to the Provisio API.
# Runs on bare Jenkins agents: Python standard library and ansible-core only.

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: provisio_callback
type: notification
short_description: Sends signed playbook events to the Provisio API
description:
  - Posts the playbook's events (start, play and task starts, host results, final stats) to the API
    in JSON batches (an object whose C(events) key holds the list), signed with HMAC-SHA256 keyed
    by the deployment's callback token.
  - Each event carries a per-run counter (1, 2, 3, ...), a uuid, the event name, the host, the task
    and a UTC timestamp. Results of C(no_log) tasks are censored.
  - Delivery happens on a background thread and never fails the playbook. Connection errors,
    HTTP 5xx and 429 are retried with exponential backoff; other 4xx answers are not retried.
  - The event names, the keys of an event, the text and request size caps are the callback
    contract, C(vocabulary/callback_events.py) of the same checkout, which the API reads too.
  - Disables itself with a warning when O(url) or O(token) is missing, or when the contract file
    cannot be loaded.
requirements:
  - enable in configuration (C(callbacks_enabled = provisio_callback))
options:
  url:
    description: Full callback URL of the deployment, C(https://host/api/deployments/{id}/callback).
    type: str
    env:
      - name: PROVISIO_CALLBACK_URL
    ini:
      - section: callback_provisio
        key: url
  token:
    description: The deployment's callback token; the HMAC-SHA256 key of every request.
    type: str
    env:
      - name: PROVISIO_CALLBACK_TOKEN
    ini:
      - section: callback_provisio
        key: token
  timeout:
    description: Seconds to wait for one HTTP request.
    type: float
    default: 10
    env:
      - name: PROVISIO_CALLBACK_TIMEOUT
    ini:
      - section: callback_provisio
        key: timeout
  batch_size:
    description: Most events sent in one request; a full batch is sent at once.
    type: int
    default: 100
    env:
      - name: PROVISIO_CALLBACK_BATCH_SIZE
    ini:
      - section: callback_provisio
        key: batch_size
  max_retry_time:
    description:
      - Seconds during which a batch that could not be delivered is retried, and the longest the
        end of the playbook waits for the last events.
    type: float
    default: 120
    env:
      - name: PROVISIO_CALLBACK_MAX_RETRY_TIME
    ini:
      - section: callback_provisio
        key: max_retry_time
"""

USER_AGENT = "provisio-callback/1"

# The callback contract is vocabulary/callback_events.py of this checkout (the plugin lives in
# <checkout>/playbooks/callback_plugins/; Jenkins copies vocabulary/ with playbooks/). The API
# imports it; here, inside ansible-playbook, the project is not installed and its packages'
# dependencies are absent, and putting the checkout on sys.path would change imports for every
# other plugin and module of the run. So the plugin loads that one file, which holds only the
# standard library, by its path: one definition on both ends, nothing generated to keep in step.
CONTRACT_PATH = Path(__file__).resolve().parents[2] / "vocabulary" / "callback_events.py"


def load_contract(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("provisio_callback_contract", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Python module at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Never raise here: Ansible imports every plugin of the directory, enabled or not. Without the
# contract, set_options disables the plugin with this reason.
contract: Any = None
CONTRACT_ERROR: str | None = None
try:
    contract = load_contract(CONTRACT_PATH)
except Exception as exc:
    CONTRACT_ERROR = f"cannot load the callback contract {CONTRACT_PATH}: {exc!r}"
CENSORED = contract.CENSORED if contract is not None else None


def sign(token: str, timestamp: str, body: bytes) -> str:
    """The X-Provisio-Signature value: HMAC-SHA256 over `timestamp + "." + body`."""
    mac = hmac.new(token.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would be replayed as a GET without its body: treat it as an error instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class EventSender:
    """Delivers events to the API from a background thread.

    `send` only queues. The thread sends a batch when it is full, when `flush` asks (after each task
    start), and at `close`; a batch whose body would pass the contract's cap goes out in halves.
    A batch that fails with a connection error, 5xx or 429 is retried with
    exponential backoff (re-signed each time, with a fresh timestamp) until `max_retry_time` has
    passed since its first attempt; any other 4xx drops it at once. Batches go out in order, one at
    a time. Nothing here raises into the caller: problems are collected in `errors`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        batch_size: int = 100,
        max_retry_time: float = 120.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_body_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._token = token
        self.timeout = timeout
        self.batch_size = max(1, min(int(batch_size), contract.MAX_EVENTS_PER_BATCH))
        self.max_body_bytes = max_body_bytes or contract.MAX_BODY_BYTES
        self.max_retry_time = max(0.0, float(max_retry_time))
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._wakeup = threading.Event()  # interrupts a backoff sleep when closing
        self._close_deadline: float | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.delivered = 0  # events the API accepted
        self.dropped = 0  # events given up on
        self.requests = 0  # HTTP requests made, retries included
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._thread = threading.Thread(target=self._run, name="provisio-callback", daemon=True)
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> None:
        self._queue.put(("event", event))

    def flush(self) -> None:
        """Send what is queued now, without waiting for a full batch."""
        self._queue.put(("flush", None))

    def close(self, timeout: float | None = None) -> bool:
        """Send everything still queued and wait at most `timeout` seconds (default: the retry
        budget plus one request). Returns whether everything was handled (delivered or dropped)."""
        if timeout is None:
            timeout = self.max_retry_time + self.timeout
        with self._lock:
            self._close_deadline = self._clock() + timeout
        self._queue.put(("close", None))
        self._wakeup.set()
        self._thread.join(max(0.0, timeout) + 1.0)
        return not self._thread.is_alive()

    def drain_errors(self) -> list[str]:
        with self._lock:
            errors, self.errors = self.errors, []
        return errors

    # -- the sender thread ----------------------------------------------------------------------

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _run(self) -> None:
        pending: list[Any] = []
        closing = False
        while not closing:
            items = [self._queue.get()]
            # Take whatever else is queued too, so a backlog goes out in full batches.
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            flush_now = False
            for kind, payload in items:
                if kind == "event":
                    pending.append(payload)
                elif kind == "flush":
                    flush_now = True
                elif kind == "close":
                    closing = flush_now = True
            try:
                while len(pending) >= self.batch_size or (flush_now and pending):
                    batch, pending = pending[: self.batch_size], pending[self.batch_size :]
                    self._deliver(batch)
            except Exception as exc:  # keep the thread alive: later events may still go out
                self._error(f"provisio callback sender: unexpected error: {exc!r}")

    @staticmethod
    def _encode(batch: list[Any]) -> bytes:
        # A fresh nonce per attempt: the API refuses a signature it has seen (a replay), and a
        # retry in the same second would otherwise sign the very same bytes.
        payload = {"events": batch, "nonce": uuid.uuid4().hex}
        return json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")

    def _deliver(self, batch: list[Any]) -> None:
        body = self._encode(batch)
        if len(body) > self.max_body_bytes:
            if len(batch) > 1:
                half = len(batch) // 2
                self._deliver(batch[:half])
                self._deliver(batch[half:])
            else:
                self.dropped += 1
                self._error(
                    f"provisio callback: event {_span(batch)} not delivered: {len(body)} bytes, "
                    f"over the API's limit of {self.max_body_bytes}"
                )
            return
        first_attempt = self._clock()
        backoff = self.initial_backoff
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                body = self._encode(batch)
            retryable, detail, retry_after = self._post(body)
            if detail is None:
                self.delivered += len(batch)
                return
            now = self._clock()
            deadline = first_attempt + self.max_retry_time
            with self._lock:
                if self._close_deadline is not None:
                    deadline = min(deadline, self._close_deadline)
            delay = min(backoff, self.max_backoff)
            if retry_after is not None:
                delay = min(max(delay, retry_after), self.max_backoff)
            delay *= 0.8 + 0.4 * random.random()  # jitter: many agents, one API
            if not retryable or now + delay > deadline:
                self.dropped += len(batch)
                why = detail if not retryable else f"{detail}; gave up after {attempt} attempts"
                self._error(f"provisio callback: events {_span(batch)} not delivered: {why}")
                return
            if self._wakeup.wait(delay):  # close() shortened the deadline: re-check it now
                self._wakeup.clear()
            backoff *= 2

    def _post(self, body: bytes) -> tuple[bool, str | None, float | None]:
        """One signed POST. Returns (retryable, error or None on success, Retry-After seconds)."""
        timestamp = str(int(time.time()))
        try:
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    "X-Provisio-Timestamp": timestamp,
                    "X-Provisio-Signature": sign(self._token, timestamp, body),
                },
            )
        except ValueError as exc:  # a malformed URL does not get better by retrying
            return False, f"bad url: {exc}", None
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                return False, None, None
        except urllib.error.HTTPError as exc:
            status = exc.code
            headers = exc.headers
            retry_after = _retry_after_seconds(headers.get("Retry-After") if headers else None)
            try:
                text = exc.read(300).decode("utf-8", "replace")
            except Exception:
                text = ""
            finally:
                exc.close()
            retryable = status >= 500 or status == 429
            return retryable, f"HTTP {status} {text}".strip(), retry_after
        except ValueError as exc:  # http.client.InvalidURL and friends: retrying will not help
            return False, f"bad url: {exc}", None
        except Exception as exc:  # URLError, timeouts, resets: the API may come back
            return True, f"{type(exc).__name__}: {exc}", None


def _span(batch: list[Any]) -> str:
    counters = [
        e["counter"] for e in batch if isinstance(e, Mapping) and isinstance(e.get("counter"), int)
    ]
    return f"{min(counters)}..{max(counters)}" if counters else "?"


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - older agents' Pythons


def _first_failed_item_msg(raw: Mapping[str, Any]) -> str | None:
    # A loop's result says only "One or more items failed"; the reason is in the item.
    items = raw.get("results")
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, Mapping) and item.get("failed") and not item.get("_ansible_no_log"):
            if item.get("msg"):
                return str(item["msg"])
    return None


def _bounded(value: Any) -> Any:
    return None if value is None else contract.bound_text(value)


def _attr(obj: Any, public: str, private: str) -> Any:
    # ansible-core 2.19 made TaskResult.host/.task/.result public; older cores only have _host...
    value = getattr(obj, public, None)
    return value if value is not None else getattr(obj, private, None)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "provisio_callback"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disabled = False
        self.sender: EventSender | None = None
        self._counter = 0
        self._counter_lock = threading.Lock()
        self._finished = False
        self._warned_keys: set[str] = set()

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if contract is None:
            self._display.warning(f"provisio_callback is disabled: {CONTRACT_ERROR}")
            self.disabled = True
            return
        url = self.get_option("url")
        token = self.get_option("token")
        if not url or not token:
            missing = " and ".join(
                name for name, value in (("url", url), ("token", token)) if not value
            )
            self._display.warning(
                f"provisio_callback is disabled: no {missing} "
                "(set PROVISIO_CALLBACK_URL and PROVISIO_CALLBACK_TOKEN)"
            )
            self.disabled = True
            return
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            self._display.warning("provisio_callback is disabled: the url must be http(s)")
            self.disabled = True
            return
        self.sender = EventSender(
            url,
            token,
            timeout=float(self.get_option("timeout")),
            batch_size=int(self.get_option("batch_size")),
            max_retry_time=float(self.get_option("max_retry_time")),
        )

    # -- building events ------------------------------------------------------------------------

    def _emit(
        self,
        event: str,
        *,
        host: str | None = None,
        task: str | None = None,
        data: dict[str, Any] | None = None,
        flush: bool = False,
    ) -> None:
        if self.disabled or self.sender is None or self._finished:
            return
        try:
            with self._counter_lock:
                self._counter += 1
                counter = self._counter
            self.sender.send(
                {
                    "counter": counter,
                    "uuid": str(uuid.uuid4()),
                    "event": event,
                    "host": _bounded(host),
                    "task": _bounded(task),
                    "timestamp": _now_iso(),
                    "data": self._contract_data(data or {}),
                }
            )
            if flush:
                self.sender.flush()
            self._report_errors()
        except Exception as exc:  # the playbook never fails because of us
            self._warn(f"provisio_callback: could not queue {event}: {exc!r}")

    def _contract_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """`data` as the API keeps it: the contract's keys only, text bounded like the API's."""
        unknown = set(data) - contract.DATA_KEYS - self._warned_keys
        if unknown:  # a bug here, not in the playbook: said once per key, never sent in vain
            self._warned_keys |= unknown
            self._warn(f"provisio_callback: keys outside the callback contract: {sorted(unknown)}")
        return {
            key: _bounded(value) if key in contract.TEXT_DATA_KEYS else value
            for key, value in data.items()
            if key in contract.DATA_KEYS
        }

    def _warn(self, message: str) -> None:
        try:
            self._display.warning(message)
        except Exception:
            pass

    def _report_errors(self) -> None:
        if self.sender is not None:
            for message in self.sender.drain_errors():
                self._warn(message)

    def _result_event(self, event: str, result: Any, **extra: Any) -> None:
        try:
            host = _attr(result, "host", "_host")
            task = _attr(result, "task", "_task")
            raw = _attr(result, "result", "_result") or {}
            data: dict[str, Any] = {"task_uuid": getattr(task, "_uuid", None)}
            if task is not None:
                data["action"] = getattr(task, "action", None)
            no_log = bool(raw.get("_ansible_no_log")) or bool(getattr(task, "no_log", False))
            summary: dict[str, Any] = {
                "changed": bool(raw.get("changed", False)),
                "failed": bool(raw.get("failed", False)) or event == contract.RUNNER_ON_FAILED,
            }
            if event == contract.RUNNER_ON_SKIPPED:
                summary["skipped"] = True
            if event == contract.RUNNER_ON_UNREACHABLE:
                summary["unreachable"] = True
            if no_log:
                summary["censored"] = CENSORED
            else:
                if "censored" in raw:
                    summary["censored"] = CENSORED
                msg = _first_failed_item_msg(raw) if summary["failed"] else None
                if raw.get("msg") is not None:
                    msg = f"{raw['msg']}: {msg}" if msg else raw["msg"]
                if msg is not None:
                    summary["msg"] = msg
                if isinstance(raw.get("rc"), int):
                    summary["rc"] = raw["rc"]
                if event in contract.FAILING_EVENTS and raw.get("stderr"):
                    summary["stderr"] = raw["stderr"]
                if raw.get("skip_reason"):
                    summary["skip_reason"] = raw["skip_reason"]
            # Flat, the contract's keys only; _emit bounds the text.
            data.update(summary)
            data.update(extra)
            self._emit(
                event,
                host=host.get_name() if host is not None else None,
                task=task.get_name() if task is not None else None,
                data=data,
            )
        except Exception as exc:
            self._warn(f"provisio_callback: could not report {event}: {exc!r}")

    # -- Ansible's callbacks --------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook: Any) -> None:
        name = getattr(playbook, "_file_name", None)
        self._emit(
            contract.PLAYBOOK_ON_START,
            data={"playbook": os.path.basename(name) if name else None},
            flush=True,
        )

    def v2_playbook_on_play_start(self, play: Any) -> None:
        try:
            name = play.get_name()
            self._emit(contract.PLAY_START, task=name, data={"play": name})
        except Exception as exc:
            self._warn(f"provisio_callback: could not report a play start: {exc!r}")

    def _task_start(self, task: Any, *, handler: bool) -> None:
        try:
            data = {
                "task_uuid": getattr(task, "_uuid", None),
                "action": getattr(task, "action", None),
                "handler": handler,
            }
            self._emit(contract.TASK_START, task=task.get_name(), data=data, flush=True)
        except Exception as exc:
            self._warn(f"provisio_callback: could not report a task start: {exc!r}")

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task_start(task, handler=False)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task_start(task, handler=True)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result_event(contract.RUNNER_ON_OK, result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result_event(contract.RUNNER_ON_FAILED, result, ignore_errors=bool(ignore_errors))

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result_event(contract.RUNNER_ON_SKIPPED, result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result_event(contract.RUNNER_ON_UNREACHABLE, result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self.disabled or self.sender is None or self._finished:
            return
        try:
            per_host: dict[str, dict[str, int]] = {}
            for host in sorted(stats.processed.keys()):
                # Ansible's summary uses the contract's names.
                summary = stats.summarize(host)
                per_host[host] = {key: summary.get(key, 0) for key in contract.HOST_STATS_KEYS}
            with self._counter_lock:
                total = self._counter + 1  # this event included
            self._emit(contract.PLAYBOOK_ON_STATS, data={"stats": per_host, "total_events": total})
            self._finished = True
            delivered = self.sender.close()
            self._report_errors()
            if not delivered:
                self._warn("provisio_callback: gave up waiting for the last events to be delivered")
        except Exception as exc:
            self._warn(f"provisio_callback: could not report the stats: {exc!r}")
