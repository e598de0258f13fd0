# Provisio: sends a playbook's events, signed, to the Provisio API.
# Runs on bare Jenkins agents: Python standard library and ansible-core only.

from __future__ import annotations

import hashlib
import hmac
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
  - Disables itself with a warning when O(url) or O(token) is missing.
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

CENSORED = (
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
)
MSG_LIMIT = 2000  # characters kept of a result's msg / stderr
USER_AGENT = "provisio-callback/1"


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
    start), and at `close`. A batch that fails with a connection error, 5xx or 429 is retried with
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._token = token
        self.timeout = timeout
        self.batch_size = max(1, int(batch_size))
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

    def _deliver(self, batch: list[Any]) -> None:
        first_attempt = self._clock()
        backoff = self.initial_backoff
        attempt = 0
        while True:
            attempt += 1
            # A fresh nonce per attempt: the API refuses a signature it has seen (a replay), and
            # a retry in the same second would otherwise sign the very same bytes.
            payload = {"events": batch, "nonce": uuid.uuid4().hex}
            body = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
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
                counters = [
                    e["counter"]
                    for e in batch
                    if isinstance(e, Mapping) and isinstance(e.get("counter"), int)
                ]
                span = f"{min(counters)}..{max(counters)}" if counters else "?"
                why = detail if not retryable else f"{detail}; gave up after {attempt} attempts"
                self._error(f"provisio callback: events {span} not delivered: {why}")
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


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - older agents' Pythons


def _trim(value: Any, limit: int = MSG_LIMIT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "...(trimmed)"


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

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
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
                    "host": host,
                    "task": task,
                    "timestamp": _now_iso(),
                    "data": data or {},
                }
            )
            if flush:
                self.sender.flush()
            self._report_errors()
        except Exception as exc:  # the playbook never fails because of us
            self._warn(f"provisio_callback: could not queue {event}: {exc!r}")

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
                "failed": bool(raw.get("failed", False)) or event == "runner_on_failed",
            }
            if event == "runner_on_skipped":
                summary["skipped"] = True
            if event == "runner_on_unreachable":
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
                    summary["msg"] = _trim(msg)
                if isinstance(raw.get("rc"), int):
                    summary["rc"] = raw["rc"]
                if event in ("runner_on_failed", "runner_on_unreachable") and raw.get("stderr"):
                    summary["stderr"] = _trim(raw["stderr"])
                if raw.get("skip_reason"):
                    summary["skip_reason"] = _trim(raw["skip_reason"], 200)
            # Flat: the API keeps the keys it knows (changed, failed, msg, rc, censored, ...).
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
            "playbook_on_start",
            data={"playbook": os.path.basename(name) if name else None},
            flush=True,
        )

    def v2_playbook_on_play_start(self, play: Any) -> None:
        try:
            name = play.get_name()
            self._emit("playbook_on_play_start", task=name, data={"play": name})
        except Exception as exc:
            self._warn(f"provisio_callback: could not report a play start: {exc!r}")

    def _task_start(self, task: Any, *, handler: bool) -> None:
        try:
            data = {
                "task_uuid": getattr(task, "_uuid", None),
                "action": getattr(task, "action", None),
                "handler": handler,
            }
            self._emit("playbook_on_task_start", task=task.get_name(), data=data, flush=True)
        except Exception as exc:
            self._warn(f"provisio_callback: could not report a task start: {exc!r}")

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task_start(task, handler=False)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task_start(task, handler=True)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result_event("runner_on_ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result_event("runner_on_failed", result, ignore_errors=bool(ignore_errors))

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result_event("runner_on_skipped", result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result_event("runner_on_unreachable", result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self.disabled or self.sender is None or self._finished:
            return
        try:
            per_host: dict[str, dict[str, int]] = {}
            for host in sorted(stats.processed.keys()):
                summary = stats.summarize(host)
                per_host[host] = {
                    "ok": summary.get("ok", 0),
                    "changed": summary.get("changed", 0),
                    "failures": summary.get("failures", 0),
                    "unreachable": summary.get("unreachable", 0),
                    "skipped": summary.get("skipped", 0),
                    "rescued": summary.get("rescued", 0),
                    "ignored": summary.get("ignored", 0),
                }
            with self._counter_lock:
                total = self._counter + 1  # this event included
            self._emit("playbook_on_stats", data={"stats": per_host, "total_events": total})
            self._finished = True
            delivered = self.sender.close()
            self._report_errors()
            if not delivered:
                self._warn("provisio_callback: gave up waiting for the last events to be delivered")
        except Exception as exc:
            self._warn(f"provisio_callback: could not report the stats: {exc!r}")
