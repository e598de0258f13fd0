"""Callback events as the plugin sends them: signed batches shaped like a real playbook."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from api.callback_ingest import signature_of


def signed_request(
    token: str, events: list[dict[str, Any]], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one batch, signed like the plugin does (HMAC over `ts.body`), with
    a fresh nonce per attempt as the plugin adds, so that a retry never signs the same bytes."""
    payload = {"events": events, "nonce": uuid.uuid4().hex}
    body = json.dumps(payload, separators=(",", ":")).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "provisio-bench/1",
        "X-Provisio-Timestamp": ts,
        "X-Provisio-Signature": "sha256=" + signature_of(token, ts, body),
    }


def event(
    counter: int,
    name: str,
    *,
    host: str | None = None,
    task: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "counter": counter,
        "uuid": str(uuid.uuid4()),
        "event": name,
        "host": host,
        "task": task,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data or {},
    }


def host_stats(hosts: int, tasks: int) -> dict[str, dict[str, int]]:
    return {
        f"host-{h:03d}": {"ok": tasks, "changed": tasks // 2, "failures": 0, "unreachable": 0}
        for h in range(hosts)
    }


def playbook_batches(hosts: int, tasks: int, batch_size: int = 100) -> Iterator[list[dict]]:  # type: ignore[type-arg]
    """The batches the plugin sends for a successful run of `tasks` tasks on `hosts` hosts.

    As its EventSender does: `playbook_on_start` goes out alone (flushed), every task start
    flushes what is queued (the previous task's results and itself), a batch never holds more
    than `batch_size` events, and the final stats close the run with what is left."""
    counter = 0
    pending: list[dict[str, Any]] = []

    def emit(name: str, **kwargs: Any) -> None:
        nonlocal counter
        counter += 1
        pending.append(event(counter, name, **kwargs))

    def cut(flush: bool) -> Iterator[list[dict[str, Any]]]:
        nonlocal pending
        while len(pending) >= batch_size or (flush and pending):
            batch, pending = pending[:batch_size], pending[batch_size:]
            yield batch

    emit("playbook_on_start", data={"playbook": "deploy.yml"})
    yield from cut(flush=True)
    emit("playbook_on_play_start", task="Provision", data={"play": "Provision"})
    for t in range(tasks):
        task = f"Task {t:02d}: configure service"
        emit("playbook_on_task_start", task=task, data={"action": "ansible.builtin.command"})
        yield from cut(flush=True)
        for h in range(hosts):
            changed = (h + t) % 2 == 0
            emit(
                "runner_on_ok",
                host=f"host-{h:03d}",
                task=task,
                data={
                    "changed": changed,
                    "failed": False,
                    "rc": 0,
                    "msg": "changed" if changed else "ok",
                },
            )
            yield from cut(flush=False)
    emit(
        "playbook_on_stats",
        data={"stats": host_stats(hosts, tasks), "total_events": counter + 1},
    )
    yield from cut(flush=True)


def playbook_event_count(hosts: int, tasks: int) -> int:
    """Start, play start, each task's start and per-host result, final stats."""
    return 3 + tasks * (1 + hosts)
