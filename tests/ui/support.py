"""Helpers for the UI tests: signed callback events, an SSE reader, deployments via the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from domain.callback_tokens import callback_token
from settings import Settings
from tests.callback_events import signed
from tests.conftest import wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


async def screenshot(page: Any, name: str) -> None:
    """Saved under test-artifacts/ui/ (gitignored) for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def send_events(
    http: httpx.AsyncClient,
    settings: Settings,
    deployment: dict[str, Any],
    events: list[Any],
    *,
    run: int = 1,
) -> dict[str, Any]:
    """POST events of pipeline run `run` to the callback endpoint, signed with that run's token
    (a cancel's or a destroy's teardown is the deployment's next run)."""
    token = callback_token(
        settings.callback_secret, deployment["id"], deployment["workflow_id"], run
    )
    body, headers = signed(token, {"events": events})
    response = await http.post(
        f"/api/deployments/{deployment['id']}/callback",
        params={"run": run},
        content=body,
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def create_deployment(
    http: httpx.AsyncClient, account: Any, template_id: int, name: str
) -> dict[str, Any]:
    response = await http.post(
        "/api/deployments",
        json={"template_id": template_id, "deployment_name": name},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def wait_status(
    http: httpx.AsyncClient, account: Any, deployment_id: int, status: str
) -> dict[str, Any]:
    async def reached() -> Any:
        response = await http.get(f"/api/deployments/{deployment_id}", headers=account.headers)
        body = response.json()
        return body if body["status"] == status else None

    return await wait_for(reached)  # type: ignore[no-any-return]


@dataclass
class Sse:
    """One event of a text/event-stream (`comment` set for a `:` line)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """The events of a streamed response, comments included, as they arrive."""
    current = Sse()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data or current.id is not None or current.event != "message":
                current.data = "\n".join(data)
                yield current
            current, data = Sse(), []
        elif line.startswith(":"):
            yield Sse(event="", comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value


class EventStream:
    """An open SSE response read by a background task, so that waiting for the next event with
    a timeout never cancels the read itself."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._queue: asyncio.Queue[Sse | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for item in sse_events(self.response):
                await self._queue.put(item)
        finally:
            await self._queue.put(None)

    async def next(self, timeout_s: float = 15, *, comments: bool = False) -> Sse | None:
        """The next event (None once the server closed the stream)."""
        while True:
            item = await asyncio.wait_for(self._queue.get(), timeout_s)
            if item is None or comments or item.comment is None:
                return item

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[EventStream]:
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        try:
            yield stream
        finally:
            await stream.close()
