"""GET /api/deployments/{id}/events: history rows as SSE, resumable, gap-free, bounded, private."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.routes import events as events_module
from api.routes.events import StreamState
from db.event_reads import Poll
from db.repository import record_step
from db.session import SessionMaker
from settings import Settings
from tests.callback_events import event
from tests.conftest import wait_for
from tests.ui.support import (
    Sse,
    create_deployment,
    open_stream,
    send_events,
    wait_status,
)
from vocabulary.contracts import RecordStepInput
from vocabulary.statuses import DeploymentStatus as S

RUN_START = [
    event(1, "playbook_on_start"),
    event(2, "playbook_on_play_start", task="Provision"),
    event(3, "playbook_on_task_start", task="Make filesystem"),
    event(4, "runner_on_ok", "web-1", "Make filesystem", changed=True),
    event(5, "runner_on_ok", "web-2", "Make filesystem", changed=True),
]
RUN_END = [
    event(6, "playbook_on_task_start", task="Mount"),
    event(7, "runner_on_ok", "web-1", "Mount"),
    event(
        8,
        "playbook_on_stats",
        stats={"web-1": {"ok": 2, "changed": 1, "failures": 0}},
        total_events=8,
    ),
]


@pytest.fixture
async def queued(
    http: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> dict[str, Any]:
    """An operator's deployment waiting for its callback."""
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-sse")
    await wait_status(http, operator, deployment["id"], "queued")
    return {**deployment, "account": operator}


async def collect(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    until: Any,
    limit: int | None = None,
) -> list[Sse]:
    """Events of one connection (no comments) until `until(event)` is true, or until `limit`
    history rows came (then the connection is dropped)."""
    received: list[Sse] = []
    async with open_stream(http, url, headers) as stream:
        while True:
            item = await stream.next()
            assert item is not None, f"stream closed early after {received}"
            received.append(item)
            if until(item) or (limit is not None and len(history_ids(received)) >= limit):
                return received


def history_ids(items: list[Sse]) -> list[int]:
    return [int(item.id) for item in items if item.event == "history" and item.id is not None]


async def test_stream_resumes_after_last_event_id_without_duplicates_or_gaps(
    http: httpx.AsyncClient, queued: dict[str, Any], settings: Settings
) -> None:
    headers = queued["account"].headers
    url = f"/api/deployments/{queued['id']}/events"
    await send_events(http, settings, queued, RUN_START)
    await wait_status(http, queued["account"], queued["id"], "running")

    # First connection: everything so far, then the current status. Drop it after 6 rows.
    first = await collect(http, f"{url}?after=0", headers, until=lambda e: False, limit=6)
    seen_ids = history_ids(first)
    assert seen_ids == sorted(seen_ids) and len(set(seen_ids)) == len(seen_ids)
    for item in first:
        if item.event == "history":
            row = item.json()
            assert row["id"] == int(item.id or 0)
            assert set(row) == {"id", "status", "message", "details", "attempt", "created_at"}

    # While nobody listens, the run ends.
    await send_events(http, settings, queued, RUN_END)
    await wait_status(http, queued["account"], queued["id"], "succeeded")

    # Reconnect the way EventSource does: the last id received, in Last-Event-ID.
    rest = await collect(
        http, url, {**headers, "Last-Event-ID": str(seen_ids[-1])}, until=lambda e: e.event == "end"
    )
    resumed_ids = history_ids(rest)
    full = (await http.get(f"/api/deployments/{queued['id']}/history", headers=headers)).json()
    assert seen_ids + resumed_ids == [row["id"] for row in full]  # no duplicate, no gap
    statuses = [item.json() for item in rest if item.event == "status"]
    assert statuses[-1]["status"] == "succeeded" and statuses[-1]["final"] is True
    # The status comes after the history row written with it, and `end` closes the stream.
    assert rest[-1].event == "end" and rest[-2].event == "status"
    assert rest[-3].json()["message"] == "Deployment succeeded"

    # `after` does the same for a first connection.
    again = await collect(
        http, f"{url}?after={seen_ids[2]}", headers, until=lambda e: e.event == "end"
    )
    assert history_ids(again) == [row["id"] for row in full][3:]

    # A reconnect after the end, with nothing new: 204, so EventSource stops reconnecting.
    done = await http.get(url, headers={**headers, "Last-Event-ID": str(full[-1]["id"])})
    assert done.status_code == 204


async def test_a_row_is_held_back_until_a_lower_id_still_committing_is_visible(
    http: httpx.AsyncClient, queued: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """A transaction that drew a lower id but commits later must not be skipped."""
    url = f"/api/deployments/{queued['id']}/events?after=0"
    async with open_stream(http, url, queued["account"].headers) as stream:
        while (item := await stream.next()) is not None and item.event != "status":
            pass  # caught up

        async with sessionmaker() as slow:
            slow_step = RecordStepInput(queued["id"], "test:slow", S.QUEUED, "slow writer")
            await record_step(slow, slow_step)
            async with sessionmaker.begin() as fast:
                await record_step(
                    fast, RecordStepInput(queued["id"], "test:fast", S.QUEUED, "fast writer")
                )
            # The higher id is committed, the lower one not yet: nothing may come out.
            with pytest.raises(TimeoutError):
                item = await stream.next(timeout_s=2.5)
                raise AssertionError(f"sent before the lower id was visible: {item}")
            await slow.commit()

        messages: list[str] = []
        while len(messages) < 2:
            item = await stream.next()
            assert item is not None
            if item.event == "history":
                messages.append(item.json()["message"])
        assert messages == ["slow writer", "fast writer"]


async def test_other_users_deployment_is_404_and_no_token_is_401(
    http: httpx.AsyncClient, queued: dict[str, Any], make_user: Any
) -> None:
    url = f"/api/deployments/{queued['id']}/events"
    other = await make_user("operator")
    assert (await http.get(url, headers=other.headers)).status_code == 404
    viewer = await make_user("viewer")
    assert (await http.get(url, headers=viewer.headers)).status_code == 404
    missing = await http.get(
        f"/api/deployments/{queued['id'] + 1000}/events", headers=other.headers
    )
    assert missing.status_code == 404
    assert (await http.get(url)).status_code == 401
    bad_id = await http.get(url, headers={**queued["account"].headers, "Last-Event-ID": "x"})
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]

    # An admin sees every deployment, like the history endpoint.
    admin = await make_user("admin")
    items = await collect(http, url, admin.headers, until=lambda e: e.event == "status")
    assert items[-1].json()["status"] == "queued"


async def test_stream_is_bounded_with_heartbeats_and_a_maximum_lifetime(
    http: httpx.AsyncClient, queued: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "POLL_INTERVAL_S", 0.1)
    monkeypatch.setattr(events_module, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(events_module, "MAX_STREAM_S", 1.5)
    url = f"/api/deployments/{queued['id']}/events"
    received: list[Sse] = []
    async with open_stream(http, url, queued["account"].headers) as stream:
        while (item := await stream.next(timeout_s=10, comments=True)) is not None:
            received.append(item)  # the server ends it on its own
    assert any(item.comment == "keep-alive" for item in received)
    assert not any(item.event == "end" for item in received)  # not final: the client resumes


def _poll(xmin: int, xmax: int, status: str, rows: list[int], max_id: int | None = None) -> Poll:
    now = datetime.now(UTC)
    return Poll(
        xmin=xmin,
        xmax=xmax,
        status=status,
        updated_at=now,
        max_id=max_id if max_id is not None else max(rows, default=0),
        rows=[
            {
                "id": i,
                "status": status,
                "message": f"row {i}",
                "details": {},
                "attempt": 1,
                "created_at": now,
            }
            for i in rows
        ],
    )


def _kinds(chunks: list[str]) -> list[str]:
    out = []
    for chunk in chunks:
        lines = dict(line.split(": ", 1) for line in chunk.strip().splitlines())
        out.append(f"{lines['event']}:{lines.get('id', lines['data'])}")
    return out


def test_stream_state_releases_rows_in_id_order_once_settled() -> None:
    state = StreamState(cursor=10)
    # Row 12 is visible while transaction 100 (maybe holding row 11) is still running.
    assert _kinds(state.advance(_poll(100, 105, "running", [12]), now=0.0)) == []
    # 100 ended: row 11 became visible; both go out in order, then the status.
    chunks = state.advance(_poll(105, 105, "running", [11, 12]), now=1.0)
    assert _kinds(chunks)[:2] == ["history:11", "history:12"]
    assert _kinds(chunks)[2].startswith("status:")
    assert state.cursor == 12 and not state.ended
    # Final status: `end` only once in-flight writers of that moment are done.
    assert _kinds(state.advance(_poll(106, 110, "succeeded", [13]), now=2.0)) == []
    chunks = state.advance(_poll(110, 110, "succeeded", [13]), now=3.0)
    assert [k.split(":")[0] for k in _kinds(chunks)] == ["history", "status", "end"]
    assert state.ended


def test_stream_state_gives_up_waiting_after_settle_max() -> None:
    state = StreamState(cursor=0)
    assert state.advance(_poll(100, 200, "queued", [5]), now=0.0) == []
    late = state.advance(_poll(100, 200, "queued", [5]), now=events_module.SETTLE_MAX_S + 1)
    assert _kinds(late)[0] == "history:5"


async def test_a_user_holds_a_bounded_number_of_streams_and_gets_them_back(
    http: httpx.AsyncClient, queued: dict[str, Any], settings: Settings, make_user: Any
) -> None:
    """The next stream past the cap is 429 with the error JSON; other users are not affected;
    a stream the client drops gives its slot back."""
    settings.max_event_streams_per_user = 2  # read when the app's first stream opens
    headers = queued["account"].headers
    url = f"/api/deployments/{queued['id']}/events"
    async with open_stream(http, url, headers), open_stream(http, url, headers):
        refused = await http.get(url, headers=headers)
        assert refused.status_code == 429
        assert "too many live streams open (2 per user)" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "5"
        # An admin watching the same deployment has slots of their own.
        admin = await make_user("admin")
        async with open_stream(http, url, admin.headers) as stream:
            assert (await stream.next()) is not None

    # Both dropped: the server notices within a poll or two and gives both slots back.
    async def two_open_again() -> bool:
        async with (
            http.stream("GET", url, headers=headers) as one,
            http.stream("GET", url, headers=headers) as two,
        ):
            return one.status_code == two.status_code == 200

    await wait_for(two_open_again, timeout_s=15, interval_s=1.5)


async def test_the_deployment_page_waits_for_a_free_stream_then_goes_live(
    new_page: Any, queued: dict[str, Any], settings: Settings
) -> None:
    """In the browser: a page past the cap says so and keeps asking; once another page of the
    user closes, it goes live without a reload."""
    from playwright.async_api import expect

    from tests.ui.pages import sign_in

    settings.max_event_streams_per_user = 1
    url = f"/deployments/{queued['id']}"
    first = await new_page()
    await sign_in(first, queued["account"])
    await first.goto(url)
    await expect(first.locator(".live")).to_have_text("Live")

    second = await new_page()
    await sign_in(second, queued["account"])
    await second.goto(url)
    await expect(second.locator(".live")).to_contain_text("too many live pages open")
    await first.close()  # its stream ends: the server gives the slot back
    await expect(second.locator(".live")).to_have_text("Live", timeout=20_000)
