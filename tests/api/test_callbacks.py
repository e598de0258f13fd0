"""The callback endpoint: signed events stored once, milestones signalled, attacks refused."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from api import body_limit
from api.callback_ingest import REPLAY_MEMORY_S, signature_of
from db.models import CallbackSignature, DeploymentHistory
from db.session import SessionMaker
from domain.callback_tokens import callback_token
from settings import Settings
from tests.callback_events import event, signed
from tests.conftest import wait_for
from vocabulary import callback_events as contract
from vocabulary.callback_events import (
    MAX_BODY_BYTES,
    MAX_COUNTER,
    MAX_EVENTS_PER_BATCH,
    MAX_HOST_CHARS,
    MAX_NUMBER,
    MAX_STATS_HOSTS,
    MIN_NUMBER,
)
from vocabulary.statuses import DeploymentStatus as S

RUN_OK = [
    event(1, "playbook_on_start"),
    event(2, "playbook_on_task_start", task="Make filesystem"),
    event(3, "runner_on_ok", "web-1", "Make filesystem", changed=True),
    event(
        4,
        "playbook_on_stats",
        stats={"web-1": {"ok": 1, "changed": 1, "failures": 0}},
        total_events=4,
    ),
]


@pytest.fixture
async def deployment(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any, settings: Settings
) -> dict[str, Any]:
    operator = await make_user("operator")
    created = await api.post(
        "/api/deployments",
        json={"template_id": await make_template(), "deployment_name": "pg-one"},
        headers=operator.headers,
    )
    body = created.json()

    async def queued() -> bool:
        r = await api.get(f"/api/deployments/{body['id']}", headers=operator.headers)
        return bool(r.json()["status"] == S.QUEUED)

    await wait_for(queued)
    token = callback_token(settings.callback_secret, body["id"], body["workflow_id"])
    return {**body, "token": token, "headers": operator.headers}


async def _status(api: httpx.AsyncClient, dep: dict[str, Any]) -> str:
    r = await api.get(f"/api/deployments/{dep['id']}", headers=dep["headers"])
    return str(r.json()["status"])


async def _rows(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(DeploymentHistory)) or 0)


async def _signature_rows(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(CallbackSignature)) or 0)


async def test_signed_run_is_stored_once_and_ends_the_deployment(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    url = f"/api/deployments/{deployment['id']}/callback"
    body, headers = signed(deployment["token"], {"events": RUN_OK[:2]})
    first = await api.post(url, content=body, headers=headers)
    assert first.json() == {"accepted": 2, "stored": 2}

    async def running() -> bool:
        return await _status(api, deployment) == S.RUNNING

    await wait_for(running)
    # The plugin re-sends a batch after a lost answer: re-signed (a later second, so a signature
    # of its own), same counters, nothing new.
    body, headers = signed(
        deployment["token"], {"events": RUN_OK[:2]}, timestamp=int(time.time()) + 1
    )
    again = await api.post(url, content=body, headers=headers)
    assert again.json() == {"accepted": 2, "stored": 0}

    body, headers = signed(deployment["token"], {"events": RUN_OK[2:]})
    assert (await api.post(url, content=body, headers=headers)).json()["stored"] == 2

    async def succeeded() -> bool:
        return await _status(api, deployment) == S.SUCCEEDED

    await wait_for(succeeded)
    history = (
        await api.get(f"/api/deployments/{deployment['id']}/history", headers=deployment["headers"])
    ).json()
    messages = [row["message"] for row in history]
    assert messages.count("Playbook started") == 2  # the callback event and the workflow's step
    assert "ok: web-1 — Make filesystem" in messages
    assert messages[-1] == "Deployment succeeded"
    assert history[-1]["details"]["stats"] == {"web-1": {"ok": 1, "changed": 1, "failures": 0}}

    # Events after the end change nothing.
    late = [event(5, "runner_on_ok", "web-1", "Late")]
    body, headers = signed(deployment["token"], {"events": late})
    before = await _rows(sessionmaker)
    assert (await api.post(url, content=body, headers=headers)).json()["stored"] == 0
    assert await _rows(sessionmaker) == before


async def test_failed_task_fails_the_deployment_naming_host_and_task(
    api: httpx.AsyncClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/deployments/{deployment['id']}/callback"
    run = [
        event(1, "playbook_on_start"),
        event(2, "runner_on_failed", "web-2", "Probe", msg="optional", ignore_errors=True),
        event(3, "runner_on_failed", "web-2", "Make filesystem", msg="mkfs: device busy"),
        event(4, "playbook_on_stats", stats={"web-2": {"ok": 0, "failures": 1}}, total_events=4),
    ]
    body, headers = signed(deployment["token"], {"events": run})
    assert (await api.post(url, content=body, headers=headers)).status_code == 200

    async def failed() -> bool:
        return await _status(api, deployment) == S.FAILED

    await wait_for(failed)
    history = (
        await api.get(f"/api/deployments/{deployment['id']}/history", headers=deployment["headers"])
    ).json()
    assert history[-1]["message"] == (
        "Deployment failed: task 'Make filesystem' failed on web-2: mkfs: device busy"
    )


async def test_forged_stale_replayed_and_cross_deployment_callbacks_write_nothing(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
    settings: Settings,
) -> None:
    url = f"/api/deployments/{deployment['id']}/callback"
    payload = {"events": RUN_OK}
    before, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)

    unsigned = await api.post(url, json=payload)
    assert unsigned.status_code == 401

    body, headers = signed("not-the-token", payload)
    assert (await api.post(url, content=body, headers=headers)).status_code == 401

    stale_body, stale = signed(deployment["token"], payload, timestamp=int(time.time()) - 301)
    assert (await api.post(url, content=stale_body, headers=stale)).status_code == 401
    future_body, future = signed(deployment["token"], payload, timestamp=int(time.time()) + 301)
    assert (await api.post(url, content=future_body, headers=future)).status_code == 401

    # Signed for this deployment, sent to another one's URL (and to one that does not exist).
    other = callback_token(settings.callback_secret, deployment["id"] + 1, "deployment-other")
    body, headers = signed(other, payload)
    assert (await api.post(url, content=body, headers=headers)).status_code == 401
    body, headers = signed(deployment["token"], payload)
    missing = await api.post(
        f"/api/deployments/{deployment['id'] + 999}/callback", content=body, headers=headers
    )
    assert missing.status_code == 401

    # A body changed after signing.
    tampered = body.replace(b"web-1", b"web-9")
    assert (await api.post(url, content=tampered, headers=headers)).status_code == 401
    assert await _rows(sessionmaker) == before
    assert await _signature_rows(sessionmaker) == signatures  # none of them remembered
    assert await _status(api, deployment) == S.QUEUED

    # The same signed request twice: the second is a replay. (No milestone in it, so the
    # workflow writes nothing meanwhile.)
    body, headers = signed(deployment["token"], {"events": RUN_OK[1:2]})
    assert (await api.post(url, content=body, headers=headers)).status_code == 200
    after_first = await _rows(sessionmaker)
    replay = await api.post(url, content=body, headers=headers)
    assert replay.status_code == 403
    assert await _rows(sessionmaker) == after_first
    assert await _signature_rows(sessionmaker) == signatures + 1


@pytest.mark.parametrize(
    "payload",
    [
        {"events": []},
        {"events": [{"counter": 0, "event": "runner_on_ok"}]},
        {"events": [{"counter": 1, "event": "rm -rf"}]},
        {"events": ["nope"]},
        {"events": [event(n, "runner_on_ok") for n in range(1, MAX_EVENTS_PER_BATCH + 2)]},
        [1, 2],
    ],
)
async def test_malformed_signed_events_are_422(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker, payload: Any
) -> None:
    """Refused whole: no row, no remembered signature, no milestone signalled."""
    rows, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)
    body, headers = signed(deployment["token"], payload)
    response = await api.post(
        f"/api/deployments/{deployment['id']}/callback", content=body, headers=headers
    )
    assert response.status_code == 422
    assert await _rows(sessionmaker) == rows
    assert await _signature_rows(sessionmaker) == signatures
    assert await _status(api, deployment) == S.QUEUED
    # The same signed body again is no replay: nothing of it was remembered.
    again = await api.post(
        f"/api/deployments/{deployment['id']}/callback", content=body, headers=headers
    )
    assert again.status_code == 422


@pytest.mark.parametrize(("size", "expected"), [(MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)])
async def test_a_callback_body_may_be_as_large_as_the_contract_says_and_no_larger(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
    size: int,
    expected: int,
) -> None:
    # One event padded with JSON whitespace to `size` bytes: larger than any other request may
    # be, still a valid batch. The cap is enforced before the signature is even read.
    compact = json.dumps({"events": [event(1, "runner_on_ok", "web-1", "Pad")]}).encode()
    body = compact[:-1] + b" " * (size - len(compact)) + b"}"
    assert len(body) == size
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Provisio-Timestamp": timestamp,
        "X-Provisio-Signature": "sha256=" + signature_of(deployment["token"], timestamp, body),
    }
    rows, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)
    response = await api.post(
        f"/api/deployments/{deployment['id']}/callback", content=body, headers=headers
    )
    assert response.status_code == expected, response.text
    stored = 1 if expected == 200 else 0  # the event at the cap; nothing over it
    assert await _rows(sessionmaker) == rows + stored
    assert await _signature_rows(sessionmaker) == signatures + stored


async def test_a_batch_may_hold_as_many_events_as_the_contract_says_and_no_more(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch cap, made small: a batch at the cap is stored whole, one over is refused whole
    (422 naming the events, no row, no remembered signature)."""
    monkeypatch.setattr(contract, "MAX_EVENTS_PER_BATCH", 3)
    url = f"/api/deployments/{deployment['id']}/callback"
    rows, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)
    over = [event(n, "runner_on_ok", "web-1", f"Task {n}") for n in range(1, 5)]
    body, headers = signed(deployment["token"], {"events": over})
    refused = await api.post(url, content=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "events"]
    assert await _rows(sessionmaker) == rows
    assert await _signature_rows(sessionmaker) == signatures

    body, headers = signed(deployment["token"], {"events": over[:3]})
    assert (await api.post(url, content=body, headers=headers)).json() == {
        "accepted": 3,
        "stored": 3,
    }
    assert await _rows(sessionmaker) == rows + 3


async def test_a_callback_body_streamed_without_a_length_is_cut_at_the_cap(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cap, made small, holds for a chunked body too (no Content-Length to refuse up front):
    counted as it arrives, 413 once over, nothing stored; a streamed body at the cap is read."""
    monkeypatch.setattr(body_limit, "CALLBACK_LIMIT", 2048)
    url = f"/api/deployments/{deployment['id']}/callback"
    rows, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)

    def padded(size: int, task: str) -> bytes:
        compact = json.dumps({"events": [event(1, "runner_on_ok", "web-1", task)]}).encode()
        return compact[:-1] + b" " * (size - len(compact)) + b"}"

    async def post_in_chunks(body: bytes) -> httpx.Response:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Provisio-Timestamp": timestamp,
            "X-Provisio-Signature": "sha256=" + signature_of(deployment["token"], timestamp, body),
        }

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 500):
                yield body[start : start + 500]

        return await api.post(url, content=chunks(), headers=headers)

    over = await post_in_chunks(padded(2049, "Over"))
    assert over.status_code == 413, over.text
    assert "2048" in over.json()["detail"]
    assert await _rows(sessionmaker) == rows
    assert await _signature_rows(sessionmaker) == signatures
    at_cap = await post_in_chunks(padded(2048, "At the cap"))
    assert at_cap.json() == {"accepted": 1, "stored": 1}


async def test_signatures_are_forgotten_once_past_the_replay_memory(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """A signature is remembered for REPLAY_MEMORY_S (past the freshness window its request is
    refused as stale anyway) and forgotten after it, as later requests come: one aged just past
    the memory goes, one just within it stays."""
    url = f"/api/deployments/{deployment['id']}/callback"
    sent = []
    for counter in (1, 2):
        body, headers = signed(
            deployment["token"],
            {"events": [event(counter, "runner_on_ok", "web-1", f"Task {counter}")]},
            timestamp=int(time.time()) + counter,
        )
        assert (await api.post(url, content=body, headers=headers)).status_code == 200
        sent.append(headers["X-Provisio-Signature"].removeprefix("sha256="))
    old, recent = sent
    async with sessionmaker.begin() as session:
        for signature, age_s in ((old, REPLAY_MEMORY_S + 5), (recent, REPLAY_MEMORY_S - 30)):
            await session.execute(
                update(CallbackSignature)
                .where(CallbackSignature.signature == signature)
                .values(received_at=func.now() - timedelta(seconds=age_s))
            )

    body, headers = signed(
        deployment["token"], {"events": [event(3, "runner_on_ok", "web-1", "Task 3")]}
    )
    assert (await api.post(url, content=body, headers=headers)).status_code == 200
    newest = headers["X-Provisio-Signature"].removeprefix("sha256=")
    async with sessionmaker() as session:
        kept = set(await session.scalars(select(CallbackSignature.signature)))
    assert kept == {recent, newest}


def _bad(**data: Any) -> dict[str, Any]:
    return event(2, "runner_on_ok", "web-1", "Probe", **data)


def _stats(stats: Any) -> dict[str, Any]:
    return event(2, "playbook_on_stats", stats=stats, total_events=2)


# (the out-of-bounds event, where the 422 points inside it)
OUT_OF_BOUNDS = [
    (event(MAX_COUNTER + 1, "runner_on_ok"), ["counter"]),
    (event(2**64, "runner_on_ok"), ["counter"]),
    (_bad(rc=MAX_NUMBER + 1), ["data", "rc"]),
    (_bad(rc=MIN_NUMBER - 1), ["data", "rc"]),
    (_bad(rc="x" * 100_000), ["data", "rc"]),
    (_bad(rc=1.5), ["data", "rc"]),
    (_bad(changed={"nested": ["x" * 1000] * 100}), ["data", "changed"]),
    (_bad(total_events=[1] * 10_000), ["data", "total_events"]),
    (_stats([1, 2]), ["data", "stats"]),
    (_stats({f"host-{n}": {"ok": 1} for n in range(MAX_STATS_HOSTS + 1)}), ["data", "stats"]),
    (_stats({"h" * (MAX_HOST_CHARS + 1): {"ok": 1}}), ["data", "stats"]),
    (_stats({"web-1": {"ok": 1, "extra": 1}}), ["data", "stats"]),
    (_stats({"web-1": {"ok": -1}}), ["data", "stats"]),
    (_stats({"web-1": {"ok": MAX_COUNTER + 1}}), ["data", "stats"]),
    (_stats({"web-1": {"ok": True}}), ["data", "stats"]),
    (_stats({"web-1": {"ok": "1" * 10_000}}), ["data", "stats"]),
    (_stats({"web-1": "ok"}), ["data", "stats"]),
]


async def test_a_value_beyond_the_contract_bounds_is_422_and_stores_nothing(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """Counters, numbers and the stats mapping are kept as sent, so they are bounded: one value
    beyond the bounds refuses its whole batch (the valid event beside it included), writes no
    row, remembers no signature and signals nothing."""
    url = f"/api/deployments/{deployment['id']}/callback"
    rows, signatures = await _rows(sessionmaker), await _signature_rows(sessionmaker)
    for bad, loc in OUT_OF_BOUNDS:
        body, headers = signed(deployment["token"], {"events": [RUN_OK[1], bad]})
        response = await api.post(url, content=body, headers=headers)
        assert response.status_code == 422, (loc, response.text[:300])
        assert response.json()["detail"][0]["loc"] == ["body", "events", 1, *loc]
    assert await _rows(sessionmaker) == rows
    assert await _signature_rows(sessionmaker) == signatures
    assert await _status(api, deployment) == S.QUEUED


async def test_json_that_python_reads_but_postgresql_cannot_store_is_422(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """NaN and Infinity (Python's reader takes them, jsonb does not), and nesting deeper than
    Python's stack: refused as invalid JSON, nothing stored."""
    url = f"/api/deployments/{deployment['id']}/callback"
    before = await _rows(sessionmaker)
    deep = b"[" * 100_000 + b"]" * 100_000
    bodies = [
        json.dumps({"events": [_bad(msg="fine", rc=float("nan"))]}).encode(),
        json.dumps({"events": [_bad(rc=float("inf"))]}).encode(),
        json.dumps({"events": [_bad(msg="PLACEHOLDER")]}).encode().replace(b'"PLACEHOLDER"', deep),
    ]
    for body in bodies:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Provisio-Timestamp": timestamp,
            "X-Provisio-Signature": "sha256=" + signature_of(deployment["token"], timestamp, body),
        }
        response = await api.post(url, content=body, headers=headers)
        assert response.status_code == 422, response.text[:300]
        assert response.json()["detail"][0]["loc"] == ["body"]
    assert await _rows(sessionmaker) == before


async def test_values_at_the_contract_bounds_are_stored_and_signalled(
    api: httpx.AsyncClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/deployments/{deployment['id']}/callback"
    hosts = {f"host-{n:04}": {"ok": MAX_COUNTER, "failures": 0} for n in range(MAX_STATS_HOSTS)}
    hosts["h" * MAX_HOST_CHARS] = hosts.pop("host-0000")
    run = [
        event(1, "playbook_on_start"),
        event(MAX_COUNTER - 1, "runner_on_failed", "web-1", "Probe", rc=MIN_NUMBER),
        event(MAX_COUNTER, "playbook_on_stats", stats=hosts, total_events=MAX_NUMBER),
    ]
    body, headers = signed(deployment["token"], {"events": run})
    response = await api.post(url, content=body, headers=headers)
    assert response.json() == {"accepted": 3, "stored": 3}

    async def succeeded() -> bool:
        return await _status(api, deployment) == S.SUCCEEDED

    await wait_for(succeeded)
    history = (
        await api.get(f"/api/deployments/{deployment['id']}/history", headers=deployment["headers"])
    ).json()
    counters = [row["details"].get("counter") for row in history]
    assert MAX_COUNTER in counters and MAX_COUNTER - 1 in counters
    assert history[-1]["details"]["stats"] == hosts
