"""An open event stream checks its reader's access again every RECHECK_ACCESS_S (made small
here): a user disabled, or an admin demoted, while reading loses the stream; a reader who may
still read keeps it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from api.routes import events as events_module
from tests.ui.support import EventStream, Sse, create_deployment, open_stream, wait_status


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "POLL_INTERVAL_S", 0.1)
    monkeypatch.setattr(events_module, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(events_module, "RECHECK_ACCESS_S", 0.5)


async def read_until_closed(stream: EventStream, within_s: float) -> list[Sse] | None:
    """Everything the stream sends until the server closes it, or None if it is still open
    after `within_s` seconds."""
    received: list[Sse] = []
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            item = await stream.next(timeout_s=left, comments=True)
        except TimeoutError:
            return None
        if item is None:
            return received
        received.append(item)
    return None


async def patch_user(
    http: httpx.AsyncClient, admin: Any, user_id: int, **change: Any
) -> dict[str, Any]:
    response = await http.patch(f"/api/users/{user_id}", json=change, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_reader_who_loses_access_loses_the_open_stream(
    http: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any, quick_checks: None
) -> None:
    operator = await make_user("operator")
    deployment = await create_deployment(http, operator, await make_template(), "pg-access")
    await wait_status(http, operator, deployment["id"], "queued")
    url = f"/api/deployments/{deployment['id']}/events"
    boss, other_admin = await make_user("admin"), await make_user("admin")

    async with (
        open_stream(http, url, operator.headers) as owners,
        open_stream(http, url, other_admin.headers) as admins,
    ):
        for stream in (owners, admins):
            first = await stream.next()
            assert first is not None and first.event in {"history", "status"}

        # Several access checks pass: both streams stay open, alive with heartbeats.
        assert await read_until_closed(owners, 2.0) is None
        assert await read_until_closed(admins, 0.5) is None

        # An admin demoted to operator may not read another's deployment any more.
        await patch_user(http, boss, other_admin.id, role="operator")
        closed = await read_until_closed(admins, 10)
        assert closed is not None, "the demoted admin's stream stayed open"
        assert not any(item.event == "end" for item in closed)  # cut, not finished
        assert await read_until_closed(owners, 1.0) is None  # the owner still reads

        # The owner, disabled, loses it too.
        await patch_user(http, boss, operator.id, is_active=False)
        closed = await read_until_closed(owners, 10)
        assert closed is not None, "the disabled user's stream stayed open"
        assert not any(item.event == "end" for item in closed)

    # And cannot open another.
    assert (await http.get(url, headers=operator.headers)).status_code == 401
