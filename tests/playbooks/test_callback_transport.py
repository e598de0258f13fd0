"""The callback plugin: its transport unit-tested against a real local HTTP server, its options
loaded by Ansible's plugin loader, and its events (censoring, skips, failures, unreachable hosts)
from a real ansible-playbook run."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.playbooks.callback_receiver import CallbackReceiverDouble, expected_signature
from tests.playbooks.support import CALLBACK_PLUGINS, run_ansible
from vocabulary import callback_events as contract


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "provisio_callback_under_test", CALLBACK_PLUGINS / "provisio_callback.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the repo
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


@pytest.fixture(scope="module")
def plugin(_home_in_tmp: Path) -> ModuleType:
    # Loaded once HOME points into a tmp dir: importing ansible creates ~/.ansible/tmp/...
    return _load_plugin()


def refusing_socket() -> socket.socket:
    """Bound, not listening: connections to its port are refused, and no one else can take the
    port meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def make_events(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {
            "counter": counter,
            "uuid": str(uuid.uuid4()),
            "event": "runner_on_ok",
            "host": "localhost",
            "task": f"task {counter}",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "data": {"changed": False},
        }
        for counter in range(first, last + 1)
    ]


def counters(events: list[dict[str, Any]]) -> list[int]:
    return [event["counter"] for event in events]


@pytest.fixture
def path() -> str:
    return f"/api/deployments/{uuid.uuid4().int % 10**6}/callback"


# -- signing ------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body(plugin: ModuleType) -> None:
    body = b'{"events":[{"counter":1}]}'
    signature = plugin.sign("token-1", "1700000000", body)
    assert signature == expected_signature("token-1", "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert plugin.sign("token-2", "1700000000", body) != signature
    assert plugin.sign("token-1", "1700000001", body) != signature
    assert plugin.sign("token-1", "1700000000", body + b" ") != signature


# -- batching -----------------------------------------------------------------------------------


def test_a_full_batch_goes_out_unasked_and_flush_sends_the_rest(
    receiver: CallbackReceiverDouble, path: str, plugin: ModuleType
) -> None:
    url = receiver.url(path, "secret-batch")
    sender = plugin.EventSender(url, "secret-batch", batch_size=3, max_retry_time=10)
    try:
        for event in make_events(1, 3):
            sender.send(event)
        assert counters(receiver.wait_for_events(path, 3)) == [1, 2, 3]  # no flush needed

        for event in make_events(4, 5):
            sender.send(event)
        time.sleep(0.3)
        assert counters(receiver.accepted_events(path)) == [1, 2, 3]  # a partial batch waits
        sender.flush()
        assert counters(receiver.wait_for_events(path, 5)) == [1, 2, 3, 4, 5]

        sender.send(make_events(6, 6)[0])
    finally:
        assert sender.close(10)

    requests = receiver.received(path)
    assert [len(r.events) for r in requests] == [3, 2, 1]
    for request in requests:
        assert request.signature_ok, request
        assert request.content_type == "application/json"
        assert abs(int(str(request.timestamp)) - time.time()) < 60
        assert sorted(json.loads(request.body)) == ["events", "nonce"]
    assert sender.delivered == 6 and sender.dropped == 0


def test_a_batch_over_the_body_cap_goes_out_in_halves_each_under_it(
    receiver: CallbackReceiverDouble, path: str, plugin: ModuleType
) -> None:
    url = receiver.url(path, "secret-big")
    events = make_events(1, 8)
    for event in events:
        event["data"]["msg"] = "x" * 900
    one_event_bytes = len(json.dumps({"events": events[:1], "nonce": "n" * 32}))
    cap = 3 * one_event_bytes  # room for two events and a bit, never three
    sender = plugin.EventSender(url, "secret-big", batch_size=8, max_body_bytes=cap)
    for event in events:
        sender.send(event)
    sender.flush()
    assert sender.close(10)
    requests = receiver.received(path)
    assert [len(r.events) for r in requests] == [2, 2, 2, 2]
    assert all(len(r.body) <= cap and r.signature_ok for r in requests)
    assert counters(receiver.accepted_events(path)) == list(range(1, 9))

    single = plugin.EventSender(url, "secret-big", max_body_bytes=one_event_bytes // 2)
    single.send(events[0])
    assert single.close(10)
    assert single.dropped == 1 and "over the API's limit" in single.drain_errors()[0]
    assert len(receiver.received(path)) == 4  # nothing sent that the API would refuse


def test_the_batch_size_never_passes_the_contracts_cap(plugin: ModuleType) -> None:
    sender = plugin.EventSender("http://127.0.0.1:9/x", "secret", batch_size=10**6)
    try:
        assert sender.batch_size == contract.MAX_EVENTS_PER_BATCH
        assert sender.max_body_bytes == contract.MAX_BODY_BYTES
    finally:
        sender.close(1)


def test_the_plugin_reads_the_one_contract_file(plugin: ModuleType) -> None:
    assert plugin.CONTRACT_PATH == Path(contract.__file__).resolve()
    assert plugin.contract.DATA_KEYS == contract.DATA_KEYS
    assert plugin.CENSORED == contract.CENSORED


# -- retries ------------------------------------------------------------------------------------


def test_api_down_then_up_every_event_arrives_once(plugin: ModuleType) -> None:
    # Bound, not listening: connections are refused until the receiver listens on it.
    with refusing_socket() as sock:
        port = sock.getsockname()[1]
        path = "/api/deployments/7/callback"
        receiver = CallbackReceiverDouble(sock=sock)
        receiver.tokens[path] = "secret-down"
        sender = plugin.EventSender(
            f"http://127.0.0.1:{port}{path}",
            "secret-down",
            batch_size=4,
            max_retry_time=60,
            initial_backoff=0.1,
            max_backoff=0.5,
        )
        for event in make_events(1, 10):
            sender.send(event)
        sender.flush()
        deadline = time.monotonic() + 10
        while sender.requests < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.requests >= 3 and sender.delivered == 0  # refused, retried, still trying

        receiver.start()
        try:
            assert sender.close(30)
            events = receiver.accepted_events(path)
        finally:
            receiver.stop()
        assert sorted(counters(events)) == list(range(1, 11))  # all of them, none twice
        assert all(r.signature_ok for r in receiver.received(path))
        assert sender.delivered == 10 and sender.dropped == 0


def test_5xx_and_429_are_retried_each_attempt_signed_afresh(
    receiver: CallbackReceiverDouble, path: str, plugin: ModuleType
) -> None:
    url = receiver.url(path, "secret-5xx")
    receiver.scripted[path] = [503, 429, 500]
    sender = plugin.EventSender(url, "secret-5xx", max_retry_time=60, initial_backoff=0.4)
    for event in make_events(1, 2):
        sender.send(event)
    sender.flush()
    assert sender.close(30)

    requests = receiver.received(path)
    assert [r.status for r in requests] == [503, 429, 500, 202]
    assert all(r.signature_ok for r in requests)
    # The same batch each time, under a fresh nonce, so no attempt repeats a signature.
    assert len({json.dumps(json.loads(r.body)["events"]) for r in requests}) == 1
    assert len({json.loads(r.body)["nonce"] for r in requests}) == len(requests)
    # Backoff 0.4 + 0.8 + 1.6 s (jitter at most -20%): the last attempt carries a later timestamp,
    # and its signature still verifies, so it was re-signed.
    assert int(str(requests[-1].timestamp)) > int(str(requests[0].timestamp))
    assert counters(receiver.accepted_events(path)) == [1, 2]
    assert sender.delivered == 2 and sender.dropped == 0


@pytest.mark.parametrize("status", [400, 404, 422])
def test_4xx_is_not_retried(
    receiver: CallbackReceiverDouble, path: str, status: int, plugin: ModuleType
) -> None:
    url = receiver.url(path, "secret-4xx")
    receiver.scripted[path] = [status, status, status]
    sender = plugin.EventSender(url, "secret-4xx", max_retry_time=60, initial_backoff=0.1)
    for event in make_events(1, 3):
        sender.send(event)
    sender.flush()
    started = time.monotonic()
    assert sender.close(30)
    assert time.monotonic() - started < 5  # no backoff happened
    assert [r.status for r in receiver.received(path)] == [status]
    assert sender.dropped == 3 and sender.delivered == 0
    errors = sender.drain_errors()
    assert len(errors) == 1 and f"HTTP {status}" in errors[0] and "1..3" in errors[0]


def test_a_wrong_token_is_refused_once_not_retried(
    receiver: CallbackReceiverDouble, path: str, plugin: ModuleType
) -> None:
    url = receiver.url(path, "the-right-token")
    sender = plugin.EventSender(url, "a-wrong-token", max_retry_time=60, initial_backoff=0.1)
    sender.send(make_events(1, 1)[0])
    sender.flush()
    assert sender.close(30)
    requests = receiver.received(path)
    assert [(r.status, r.signature_ok) for r in requests] == [(401, False)]
    assert sender.dropped == 1


def test_never_raises_and_close_is_bounded_when_the_api_never_answers(plugin: ModuleType) -> None:
    with refusing_socket() as nowhere:
        sender = plugin.EventSender(
            f"http://127.0.0.1:{nowhere.getsockname()[1]}/api/deployments/1/callback",
            "secret",
            max_retry_time=600,
            initial_backoff=0.2,
            max_backoff=5,
        )
        for event in make_events(1, 5):
            sender.send(event)
        sender.flush()
        started = time.monotonic()
        assert sender.close(timeout=1.5)  # gave up at close's deadline, not after 600 s
        assert time.monotonic() - started < 5
        assert sender.dropped == 5
        assert any("gave up" in error for error in sender.drain_errors())


@pytest.mark.parametrize("url", ["http://[not-an-address/x", "http://127.0.0.1:0/x"])
def test_bad_urls_do_not_raise(url: str, plugin: ModuleType) -> None:
    sender = plugin.EventSender(url, "secret", max_retry_time=0.5, initial_backoff=0.1)
    sender.send({"counter": 1})
    sender.send("not even an event")  # type: ignore[arg-type]
    sender.flush()
    assert sender.close(5)
    assert sender.dropped == 2 and sender.drain_errors()


# -- options, through Ansible's plugin loader ---------------------------------------------------


@pytest.fixture
def callback_loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("URL", "TOKEN", "TIMEOUT", "BATCH_SIZE", "MAX_RETRY_TIME"):
        monkeypatch.delenv(f"PROVISIO_CALLBACK_{name}", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    from ansible.plugins.loader import callback_loader

    callback_loader.add_directory(str(CALLBACK_PLUGINS))
    yield callback_loader


def test_plugin_disables_itself_without_url_or_token(
    callback_loader: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    callback = callback_loader.get("provisio_callback")
    callback.set_options()
    assert callback.disabled and callback.sender is None
    assert "provisio_callback is disabled: no url and token" in capsys.readouterr().err

    monkeypatch.setenv("PROVISIO_CALLBACK_URL", "http://127.0.0.1:9/api/deployments/1/callback")
    callback = callback_loader.get("provisio_callback")
    callback.set_options()
    assert callback.disabled and "no token" in capsys.readouterr().err


def test_plugin_reads_its_options_from_the_environment(
    callback_loader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIO_CALLBACK_URL", "http://127.0.0.1:9/api/deployments/1/callback")
    monkeypatch.setenv("PROVISIO_CALLBACK_TOKEN", "tok")
    monkeypatch.setenv("PROVISIO_CALLBACK_BATCH_SIZE", "7")
    monkeypatch.setenv("PROVISIO_CALLBACK_TIMEOUT", "2.5")
    monkeypatch.setenv("PROVISIO_CALLBACK_MAX_RETRY_TIME", "3")
    callback = callback_loader.get("provisio_callback")
    assert callback.CALLBACK_NEEDS_ENABLED and callback.CALLBACK_TYPE == "notification"
    callback.set_options()
    try:
        assert not callback.disabled
        sender = callback.sender
        assert (sender.url, sender.batch_size, sender.timeout, sender.max_retry_time) == (
            "http://127.0.0.1:9/api/deployments/1/callback",
            7,
            2.5,
            3.0,
        )
    finally:
        callback.sender.close(1)


# -- events of a real run -----------------------------------------------------------------------

EVENTS_PLAYBOOK = """
- name: Events of every kind
  hosts: all
  gather_facts: false
  tasks:
    - name: Print a secret
      ansible.builtin.command:
        argv: [echo, s3cr3t-ok-output]
      changed_when: false
      no_log: true
    - name: Fail with a secret
      ansible.builtin.command:
        argv: [sh, -c, "echo s3cr3t-failure-output >&2; exit 3"]
      no_log: true
      ignore_errors: true
    - name: Fail in the open
      ansible.builtin.command:
        argv:
          - sh
          - -c
          - echo visible-failure >&2; yes x | head -c 5000 >&2; echo the-last-line >&2; exit 4
      ignore_errors: true
    - name: Never run
      ansible.builtin.debug:
        msg: skipped
      when: false
"""

# A host nobody listens for (ssh to a closed port) makes runner_on_unreachable; it needs an ssh
# client, which a bare machine may lack.
HAVE_SSH = shutil.which("ssh") is not None
INVENTORY = """
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""
UNREACHABLE_HOST = """
    unreachable-host:
      ansible_connection: ssh
      ansible_host: 127.0.0.1
      ansible_port: 1
"""


def test_events_of_a_real_run(
    receiver: CallbackReceiverDouble, path: str, tmp_path: Path, plugin: ModuleType
) -> None:
    (tmp_path / "events.yml").write_text(EVENTS_PLAYBOOK)
    (tmp_path / "inventory.yml").write_text(INVENTORY + (UNREACHABLE_HOST if HAVE_SSH else ""))
    result = run_ansible(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "events.yml")],
        tmp_path,
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_PLUGINS),
        ANSIBLE_CALLBACKS_ENABLED="provisio_callback",
        PROVISIO_CALLBACK_URL=receiver.url(path, "secret-run"),
        PROVISIO_CALLBACK_TOKEN="secret-run",
    )
    # 4: a host was unreachable; else 0: every failure was ignored.
    assert result.returncode == (4 if HAVE_SSH else 0), result.stdout + result.stderr
    assert "provisio_callback" not in result.stderr  # no warning: nothing was lost

    requests = receiver.received(path)
    assert requests and all(r.signature_ok and r.status == 202 for r in requests)
    assert not any(b"s3cr3t" in r.body for r in requests)  # no_log output never leaves
    events = receiver.accepted_events(path)
    assert counters(events) == list(range(1, len(events) + 1))
    assert len({e["uuid"] for e in events}) == len(events)
    assert events[0]["event"] == "playbook_on_start"
    assert events[-1]["event"] == "playbook_on_stats"
    assert events[-1]["data"]["total_events"] == len(events)

    def find(name: str, task: str, host: str = "localhost") -> dict[str, Any]:
        found = [e for e in events if (e["event"], e["task"], e["host"]) == (name, task, host)]
        assert len(found) == 1, (name, task, host, events)
        return found[0]

    if HAVE_SSH:
        unreachable = find("runner_on_unreachable", "Print a secret", "unreachable-host")
        assert unreachable["data"]["unreachable"] is True
        assert events[-1]["data"]["stats"]["unreachable-host"]["unreachable"] == 1
    ok = find("runner_on_ok", "Print a secret")
    assert ok["data"]["censored"] == plugin.CENSORED
    assert "msg" not in ok["data"] and "rc" not in ok["data"]
    secret_failure = find("runner_on_failed", "Fail with a secret")
    assert secret_failure["data"]["censored"] == plugin.CENSORED
    assert secret_failure["data"]["failed"] is True and secret_failure["data"]["ignore_errors"]
    open_failure = find("runner_on_failed", "Fail in the open")
    assert open_failure["data"]["rc"] == 4
    # Bounded to the contract's cap, keeping the start and the end of a long stderr.
    stderr = open_failure["data"]["stderr"]
    assert len(stderr) <= contract.MAX_TEXT_CHARS
    assert stderr.startswith("visible-failure") and stderr.endswith("the-last-line")
    assert "characters trimmed" in stderr
    find("runner_on_skipped", "Never run")
    task_starts = [e["task"] for e in events if e["event"] == "playbook_on_task_start"]
    assert task_starts == ["Print a secret", "Fail with a secret", "Fail in the open", "Never run"]
    assert all(e["host"] is None for e in events if e["event"] == "playbook_on_task_start")

    stats = events[-1]["data"]["stats"]
    assert stats["localhost"] == {
        "ok": 3,
        "changed": 2,
        "failures": 0,
        "unreachable": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 2,
    }
    for event in events:
        assert set(event) == set(contract.EVENT_KEYS)
        assert set(event["data"]) <= contract.DATA_KEYS, event
        assert event["timestamp"].endswith("+00:00")


def test_without_the_contract_file_the_plugin_disables_itself_and_the_run_goes_on(
    receiver: CallbackReceiverDouble, path: str, tmp_path: Path
) -> None:
    # The plugin alone, as if playbooks/ had been copied without vocabulary/ beside it.
    plugins = tmp_path / "playbooks" / "callback_plugins"
    plugins.mkdir(parents=True)
    shutil.copy(CALLBACK_PLUGINS / "provisio_callback.py", plugins)
    (tmp_path / "play.yml").write_text(EVENTS_PLAYBOOK)
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    result = run_ansible(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
        tmp_path,
        ANSIBLE_CALLBACK_PLUGINS=str(plugins),
        ANSIBLE_CALLBACKS_ENABLED="provisio_callback",
        PROVISIO_CALLBACK_URL=receiver.url(path, "secret-missing"),
        PROVISIO_CALLBACK_TOKEN="secret-missing",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    missing = tmp_path / "vocabulary" / "callback_events.py"
    assert (
        f"provisio_callback is disabled: cannot load the callback contract {missing}"
        in " ".join(result.stderr.split())  # on a terminal, Ansible wraps long warnings
    ), result.stderr
    assert receiver.received(path) == []
