"""The callback endpoint's storage of a batch: one statement that remembers the signature and
writes the rows not stored yet, so retries, overlaps and races store every event exactly once;
and the body read as Python's JSON reader reads it, however it is read."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text

from api.callback_ingest import _loads, callback_connection, parse_events
from api.errors import DatabaseUnavailable, ValidationFailed
from db.models import DeploymentHistory
from db.session import SessionMaker, create_engine
from domain.callback_tokens import callback_token
from settings import Settings
from tests.callback_events import event, signed
from tests.conftest import wait_for
from vocabulary.statuses import DeploymentStatus as S


@pytest.fixture
async def deployment(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any, settings: Settings
) -> dict[str, Any]:
    """A deployment waiting for its playbook's events, with its callback token."""
    operator = await make_user("operator")
    created = await api.post(
        "/api/deployments",
        json={"template_id": await make_template(), "deployment_name": "pg-batches"},
        headers=operator.headers,
    )
    body = created.json()

    async def queued() -> bool:
        r = await api.get(f"/api/deployments/{body['id']}", headers=operator.headers)
        return bool(r.json()["status"] == S.QUEUED)

    await wait_for(queued)
    token = callback_token(settings.callback_secret, body["id"], body["workflow_id"])
    return {**body, "token": token}


async def _event_keys(sessionmaker: SessionMaker, deployment_id: int) -> list[str]:
    async with sessionmaker() as session:
        keys = await session.scalars(
            select(DeploymentHistory.event_key).where(
                DeploymentHistory.deployment_id == deployment_id,
                DeploymentHistory.event_key.like("event:%"),
            )
        )
        return sorted(keys)


def _results(counters: range) -> list[dict[str, Any]]:
    return [event(n, "runner_on_ok", f"web-{n}", "Make filesystem") for n in counters]


async def _post(
    api: httpx.AsyncClient, dep: dict[str, Any], events: list[dict[str, Any]], *, at: int = 0
) -> httpx.Response:
    # A later second (`at`) signs the same events anew, as the plugin's retry does.
    body, headers = signed(dep["token"], {"events": events}, timestamp=int(time.time()) + at)
    return await api.post(f"/api/deployments/{dep['id']}/callback", content=body, headers=headers)


async def test_a_batch_retried_after_half_of_it_was_stored_stores_the_other_half_once(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
) -> None:
    """The plugin splits a batch past the body cap in halves; if only the first half's answer
    arrived, the whole batch may come again: the stored half is skipped, the rest written."""
    batch = _results(range(1, 11))
    assert (await _post(api, deployment, batch[:5])).json() == {"accepted": 5, "stored": 5}
    again = await _post(api, deployment, batch, at=1)
    assert again.json() == {"accepted": 10, "stored": 5}
    assert await _event_keys(sessionmaker, deployment["id"]) == sorted(
        f"event:{n}" for n in range(1, 11)
    )


async def test_a_batch_mixing_stored_and_new_events_writes_only_the_new(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
) -> None:
    assert (await _post(api, deployment, _results(range(2, 8, 2)))).json()["stored"] == 3
    mixed = _results(range(1, 9))  # 2, 4 and 6 stored already, in between the new ones
    assert (await _post(api, deployment, mixed, at=1)).json() == {"accepted": 8, "stored": 5}
    keys = await _event_keys(sessionmaker, deployment["id"])
    assert keys == sorted(f"event:{n}" for n in range(1, 9))
    # Stored in the batch's order: the history reads as the playbook ran.
    async with sessionmaker() as session:
        counters = list(
            await session.scalars(
                select(DeploymentHistory.details["counter"].as_integer())
                .where(
                    DeploymentHistory.deployment_id == deployment["id"],
                    DeploymentHistory.event_key.in_(["event:1", "event:3", "event:5", "event:7"]),
                )
                .order_by(DeploymentHistory.id)
            )
        )
    assert counters == [1, 3, 5, 7]


async def test_the_same_batch_sent_at_once_under_several_signatures_is_stored_once(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
) -> None:
    batch = _results(range(1, 51))
    answers = await asyncio.gather(*(_post(api, deployment, batch, at=n) for n in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert sum(a.json()["stored"] for a in answers) == 50
    assert len(await _event_keys(sessionmaker, deployment["id"])) == 50


async def test_a_replayed_request_writes_nothing_even_where_its_rows_are_gone(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
) -> None:
    """The signature is checked and remembered in the statement that writes the rows: a replay
    is refused before any row is written, not only because its rows happen to exist."""
    body, headers = signed(deployment["token"], {"events": _results(range(1, 4))})
    url = f"/api/deployments/{deployment['id']}/callback"
    assert (await api.post(url, content=body, headers=headers)).json()["stored"] == 3
    async with sessionmaker.begin() as session:
        await session.execute(
            delete(DeploymentHistory).where(DeploymentHistory.event_key.like("event:%"))
        )
    replay = await api.post(url, content=body, headers=headers)
    assert replay.status_code == 403
    assert await _event_keys(sessionmaker, deployment["id"]) == []


async def test_once_a_run_is_known_a_forged_or_orphaned_request_still_stores_nothing(
    api: httpx.AsyncClient, deployment: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """After a first accepted request the API knows the deployment's workflow and checks the
    next ones without reading the deployment first: a body changed after signing is still a
    401, and a request for a deployment deleted since is one too (the storing statement finds
    no deployment with that workflow), with nothing written either time."""
    url = f"/api/deployments/{deployment['id']}/callback"
    assert (await _post(api, deployment, _results(range(1, 3)))).json()["stored"] == 2
    body, headers = signed(deployment["token"], {"events": _results(range(3, 5))})
    tampered = body.replace(b"web-3", b"web-9")
    assert (await api.post(url, content=tampered, headers=headers)).status_code == 401
    assert await _event_keys(sessionmaker, deployment["id"]) == ["event:1", "event:2"]

    async with sessionmaker.begin() as session:
        await session.execute(
            text("DELETE FROM deployments WHERE id = :id"), {"id": deployment["id"]}
        )
    orphan = await api.post(url, content=body, headers=headers)
    assert orphan.status_code == 401, orphan.text
    assert await _event_keys(sessionmaker, deployment["id"]) == []


async def test_a_connection_lost_under_the_endpoint_is_503_and_left_out_of_the_pool(
    database_url: str,
) -> None:
    """As when the database restarts: the endpoint's connection is killed under it. The
    request answers 503 (the plugin retries) and the next one gets a fresh connection."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with callback_connection(engine) as connection:
                pid = await connection.fetchval("SELECT pg_backend_pid()")
                killer = await asyncpg.connect(
                    database_url.replace("postgresql+asyncpg://", "postgresql://")
                )
                try:
                    await killer.execute("SELECT pg_terminate_backend($1)", pid)

                    async def gone() -> bool:
                        alive = await killer.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
                        )
                        return bool(alive == 0)

                    await wait_for(gone)
                finally:
                    await killer.close()
                await connection.fetchval("SELECT 1")
        async with callback_connection(engine) as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await engine.dispose()


async def test_the_endpoint_connection_is_outside_any_transaction(database_url: str) -> None:
    """Each statement commits when it answers (the workflow is signalled only after), with no
    BEGIN or COMMIT round trips, even on a connection SQLAlchemy used in a transaction before."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
        async with callback_connection(engine) as connection:
            assert not connection.is_in_transaction()
    finally:
        await engine.dispose()


# -- the body, read fast, reads as Python's reader reads it ----------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_a_body_reads_as_pythons_json_reader_reads_it(value: Any) -> None:
    body = json.dumps(value).encode()
    # Compared as text: 1 and 1.0 are equal in Python, not on the wire or in the database.
    assert json.dumps(_loads(body)) == json.dumps(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'"\\ud800"',  # a lone surrogate: orjson refuses it, Python's reader takes it
        b"[1e400]",  # infinity as a number: orjson refuses it
        b'{"a": 18446744073709551616}',  # past 64 bits: orjson reads a float
        b'{"a": -9223372036854775809}',
        b"[" * 1100 + b"]" * 1100,  # deeper than orjson reads
    ],
)
def test_what_orjson_reads_differently_is_read_by_pythons_reader(body: bytes) -> None:
    try:
        expected = json.dumps(json.loads(body))
    except RecursionError:
        with pytest.raises(RecursionError):
            _loads(body)
    else:
        assert json.dumps(_loads(body)) == expected


def test_an_integer_past_64_bits_in_a_text_field_keeps_its_digits() -> None:
    sent = event(1, "runner_on_ok", "web-1", "Probe", msg=2**64, rc=0)
    (parsed,) = parse_events(json.dumps({"events": [sent]}).encode())
    assert parsed["data"]["msg"] == str(2**64)
    with pytest.raises(ValidationFailed) as refused:
        parse_events(json.dumps({"events": [{**sent, "data": {"rc": 2**64}}]}).encode())
    assert refused.value.detail[0]["loc"] == ["body", "events", 0, "data", "rc"]


def test_stats_that_are_not_an_object_are_refused_however_they_are_read() -> None:
    for stats in (True, 1, "x"):
        sent = event(2, "playbook_on_stats", stats=stats)
        with pytest.raises(ValidationFailed) as refused:
            parse_events(json.dumps({"events": [sent]}).encode())
        assert refused.value.detail[0]["loc"] == ["body", "events", 0, "data", "stats"]


async def test_a_nul_in_event_text_is_stored_as_a_replacement_character(
    api: httpx.AsyncClient,
    deployment: dict[str, Any],
    sessionmaker: SessionMaker,
) -> None:
    """A command's binary output may hold NUL, which PostgreSQL's text and jsonb refuse: the
    batch would fail as a 500 on every retry and its events (the final stats among them) would
    be lost. NUL becomes U+FFFD in every text value; a host named with NUL in the stats (no
    inventory can name one) refuses the batch as malformed, nothing stored."""
    failed = event(1, "runner_on_failed", "web-\x00", "Run\x00it", msg="bad\x00", stderr="\x00" * 3)
    assert (await _post(api, deployment, [failed])).status_code == 200
    async with sessionmaker() as session:
        row = await session.scalar(
            select(DeploymentHistory).where(
                DeploymentHistory.deployment_id == deployment["id"],
                DeploymentHistory.event_key.like("event:%"),
            )
        )
    assert row is not None
    assert row.details["host"] == "web-\ufffd" and row.details["task"] == "Run\ufffdit"
    assert row.details["data"]["msg"] == "bad\ufffd"
    assert row.details["data"]["stderr"] == "\ufffd" * 3
    stats = {"web-\x00": {"ok": 1, "failures": 0}}
    refused = await _post(api, deployment, [event(2, "playbook_on_stats", stats=stats)])
    assert refused.status_code == 422, refused.text
    assert await _event_keys(sessionmaker, deployment["id"]) == ["event:1"]
