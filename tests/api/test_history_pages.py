"""GET /api/deployments/{id}/history in pages: a JSON list of rows oldest first (the contract),
`after` and `limit` (500 by default, 1000 at most), and a `Link: <…>; rel="next"` header while
more rows follow."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from db.models import DeploymentHistory
from db.session import SessionMaker
from tests.conftest import wait_for
from vocabulary.statuses import DeploymentStatus as S


@pytest.fixture
async def long_history(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> dict[str, Any]:
    """A queued deployment with 600 more history rows than its steps wrote."""
    operator = await make_user("operator")
    created = await api.post(
        "/api/deployments",
        json={"template_id": await make_template(), "deployment_name": "pg-long"},
        headers=operator.headers,
    )
    deployment = created.json()
    url = f"/api/deployments/{deployment['id']}"

    async def queued() -> bool:
        return bool((await api.get(url, headers=operator.headers)).json()["status"] == S.QUEUED)

    await wait_for(queued)
    rows = [
        {
            "deployment_id": deployment["id"],
            "event_key": f"test:{n}",
            "status": S.QUEUED.value,
            "message": f"row {n}",
            "details": {"n": n},
        }
        for n in range(600)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(insert(DeploymentHistory), rows)
    return {**deployment, "url": f"{url}/history", "account": operator}


def _ids(response: httpx.Response) -> list[int]:
    return [row["id"] for row in response.json()]


async def test_history_pages_follow_the_link_header_to_the_whole_history(
    api: httpx.AsyncClient, long_history: dict[str, Any]
) -> None:
    headers = long_history["account"].headers
    everything = await api.get(long_history["url"], params={"limit": 1000}, headers=headers)
    assert everything.status_code == 200
    assert "link" not in everything.headers
    all_ids = _ids(everything)
    assert len(all_ids) > 600 and all_ids == sorted(all_ids)
    assert everything.json()[0]["status"] == "created"

    # The default page is 500 rows, and says where the next one is.
    first = await api.get(long_history["url"], headers=headers)
    assert _ids(first) == all_ids[:500]
    assert first.links["next"]["url"] == (
        f"/api/deployments/{long_history['id']}/history?after={all_ids[499]}&limit=500"
    )

    # Following the links with a small page gives every row once, in order.
    seen: list[int] = []
    url: str | None = f"{long_history['url']}?limit=128"
    pages = 0
    while url is not None:
        page = await api.get(url, headers=headers)
        assert page.status_code == 200
        assert 0 < len(page.json()) <= 128
        seen += _ids(page)
        url = page.links.get("next", {}).get("url")
        pages += 1
    assert seen == all_ids
    assert pages == -(-len(all_ids) // 128)

    # After the last row: an empty page of a deployment that exists, not a 404.
    past = await api.get(long_history["url"], params={"after": all_ids[-1]}, headers=headers)
    assert (past.status_code, past.json(), past.headers.get("link")) == (200, [], None)
    middle = await api.get(
        long_history["url"], params={"after": all_ids[9], "limit": 3}, headers=headers
    )
    assert _ids(middle) == all_ids[10:13]


async def test_history_pages_stay_private_and_bounded(
    api: httpx.AsyncClient, long_history: dict[str, Any], make_user: Any
) -> None:
    other = await make_user("operator")
    for params in ({}, {"after": 0}, {"after": 10**6}):
        response = await api.get(long_history["url"], params=params, headers=other.headers)
        assert response.status_code == 404, params
    missing = long_history["url"].replace(f"/{long_history['id']}/", "/999999/")
    assert (await api.get(missing, headers=other.headers)).status_code == 404

    headers = long_history["account"].headers
    for limit in (0, 1001):
        response = await api.get(long_history["url"], params={"limit": limit}, headers=headers)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]
    admin = await make_user("admin")
    seen = await api.get(long_history["url"], params={"limit": 1000}, headers=admin.headers)
    assert seen.status_code == 200 and len(seen.json()) > 600
