"""Two admins versioning one template at once: every request gets a version of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Template
from db.session import SessionMaker
from tests.api.test_admin_api import template
from tests.conftest import wait_for

WAITING_ON_LOCKS = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_two_admins_versioning_one_template_at_once_each_get_their_own_version(
    api: httpx.AsyncClient, make_user: Any, engine: AsyncEngine, sessionmaker: SessionMaker
) -> None:
    """The race made certain: the test holds back every insert into `templates` (SHARE lock:
    reads pass, writes wait) until all the requests are waiting, so without the per-name
    serialisation each would read the same latest version and take the same next one."""
    admins = [await make_user("admin"), await make_user("admin")]
    first = await api.post("/api/templates", json=template(), headers=admins[0].headers)
    assert first.status_code == 201, first.text
    requests = 6

    async with engine.connect() as holder:
        await holder.execute(text("BEGIN"))
        await holder.execute(text("LOCK TABLE templates IN SHARE MODE"))
        posts = [
            asyncio.create_task(
                api.post(
                    "/api/templates",
                    json=template(configuration={"max_connections": 100 + n}),
                    headers=admins[n % 2].headers,
                )
            )
            for n in range(requests)
        ]

        async def all_waiting() -> bool:
            async with engine.connect() as probe:
                return (await probe.scalar(WAITING_ON_LOCKS) or 0) >= requests

        await wait_for(all_waiting)
        await holder.execute(text("COMMIT"))
        responses = await asyncio.gather(*posts)

    assert [r.status_code for r in responses] == [201] * requests, [r.text for r in responses]
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(2, requests + 2))
    async with sessionmaker() as session:
        stored = list(await session.scalars(select(Template.version).order_by(Template.version)))
        assert stored == list(range(1, requests + 2))
        configurations = await session.scalars(
            select(func.count(func.distinct(Template.configuration["max_connections"])))
        )
        assert configurations.one() == requests  # one version per request, none lost


async def test_two_admins_asking_for_the_same_version_at_once_one_gets_it_the_other_409(
    api: httpx.AsyncClient, make_user: Any, engine: AsyncEngine, sessionmaker: SessionMaker
) -> None:
    admins = [await make_user("admin"), await make_user("admin")]
    async with engine.connect() as holder:
        await holder.execute(text("BEGIN"))
        await holder.execute(text("LOCK TABLE templates IN SHARE MODE"))
        posts = [
            asyncio.create_task(
                api.post("/api/templates", json=template(version=3), headers=admin.headers)
            )
            for admin in admins
        ]

        async def both_waiting() -> bool:
            async with engine.connect() as probe:
                return (await probe.scalar(WAITING_ON_LOCKS) or 0) >= len(admins)

        await wait_for(both_waiting)
        await holder.execute(text("COMMIT"))
        responses = await asyncio.gather(*posts)

    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.json()["detail"] == "template 'pg' version 3 already exists"
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Template.version))) == [3]
