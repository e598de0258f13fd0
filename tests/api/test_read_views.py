"""The read views (GET a deployment, the list, the history) serialise their rows themselves and
check their caller in their own statement: the same bytes as their response models give, and
the same 401 and 404 as every other route.

The rows are written straight to the tables (no workflow runs): what is read is the point."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.read_views import detail_json, history_json, page_json, with_links
from api.schemas import DeploymentDetail, DeploymentPage, DeploymentSummary, HistoryEntry
from api.security import create_access_token
from db.deployment_reads import deployment_detail
from db.models import Deployment, DeploymentHistory, DiskAllocation, Template, User
from db.session import SessionMaker
from settings import Settings
from tests.conftest import wait_for
from vocabulary.users import Role

DETAIL = TypeAdapter(DeploymentDetail)
PAGE = TypeAdapter(DeploymentPage)
HISTORY = TypeAdapter(list[HistoryEntry])
# Values whose JSON could come out otherwise: floats in exponent form, a negative zero, an int
# past 64 bits, text to escape or not, nesting, nulls.
ODD_VALUES: dict[str, Any] = {
    "f_big": 1e16,
    "f_small": 1.5e-7,
    "f_round": 100000.0,
    "f_third": 1 / 3,
    "neg_zero": -0.0,
    "huge": 10**20,
    "text": 'é ☃ \u2028 "q" \\ </script> \x01',
    "nested": {"a": [1, 2.5, None, True]},
    "none": None,
}
WHEN = datetime(2026, 1, 2, 12, 0, 0, 120000, tzinfo=UTC)


def _detail_row(**changes: Any) -> dict[str, Any]:
    """A row as db.deployment_reads.detail_row gives it (disks as PostgreSQL's JSON has them)."""
    row: dict[str, Any] = {
        "id": 7,
        "deployment_name": "pg-one",
        "status": "succeeded",
        "template_id": 3,
        "template_name": "postgres-small",
        "user_id": 2,
        "username": "op",
        "workflow_id": "deployment-7",
        "created_at": WHEN,
        "updated_at": WHEN.replace(microsecond=0),
        "expires_at": WHEN + timedelta(days=1),
        "service_type": "postgresql",
        "template_version": 1,
        "configuration": {"db_password": "********", **ODD_VALUES},
        "jenkins_job_id": "build:7",
        "attempt": 2,
        "retained_until": None,
        "plan": {"disks": [{"size": 1.25}], "hosts": ["h1"]},
        "approval": {"state": "approved", "by": "adm", "at": WHEN, "comment": "ok ✓"},
        "disk_allocations": [
            {
                "disk_type": "ssd",
                "size_gb": 20,
                "mount_point": "/data",
                "volume_group": "vg",
                "logical_volume": "lv",
                "filesystem_type": "xfs",
                "allocation_params": {"iops": 3000.5, "ratio": 2e-9},
                "state": state,
                "state_changed_at": at,
            }
            for state, at in (
                ("allocated", "2026-01-02T12:00:01.5+00:00"),
                ("planned", "2026-01-02T12:00:02+00:00"),
                ("released", "2026-01-02T14:00:02.000001+02:00"),
            )
        ],
    }
    return {**row, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"approval": None, "plan": None, "expires_at": None, "jenkins_job_id": None},
        {"status": "failed", "retained_until": WHEN, "disk_allocations": []},
        {"status": "destroyed", "configuration": {}},
    ],
)
def test_the_detail_is_the_bytes_its_model_gives(changes: dict[str, Any]) -> None:
    settings = Settings(secret_key="k" * 32, temporal_namespace="ns")
    row = _detail_row(**changes)
    by_model = DETAIL.dump_json(DETAIL.validate_python(with_links(copy.deepcopy(row), settings)))
    assert detail_json(copy.deepcopy(row), settings) == by_model


def test_a_page_and_a_history_are_the_bytes_their_models_give() -> None:
    summary = {key: _detail_row()[key] for key in DeploymentSummary.model_fields}
    rows = [summary, {**summary, "id": 6, "expires_at": None}]
    for cursor in (None, "aWQ6Ng=="):
        by_model = PAGE.dump_json(PAGE.validate_python({"items": rows, "next_cursor": cursor}))
        assert page_json(copy.deepcopy(rows), cursor) == by_model
    entries = [
        {
            "id": n,
            "status": "running",
            "message": f"step {n} ✓",
            "details": {"n": n, **ODD_VALUES},
            "attempt": 1,
            "created_at": WHEN.astimezone(timezone(timedelta(hours=-3))) + timedelta(seconds=n),
        }
        for n in range(3)
    ]
    assert history_json(copy.deepcopy(entries)) == HISTORY.dump_json(
        HISTORY.validate_python(entries)
    )


# Through the API, on rows of the database.


async def _deployment(sessionmaker: SessionMaker, owner_id: int, *, secret: bool = False) -> int:
    """A deployment of `owner_id` with two disks and three history rows; `secret`: its template
    declares an override write-only (a secret its key does not name)."""
    overrides = {"hush": {"type": "string", "writeOnly": True}, "open": {"type": "string"}}
    async with sessionmaker.begin() as session:
        template = Template(
            name=f"t-{uuid.uuid4().hex[:8]}",
            service_type="postgresql",
            configuration={"provisio": {"overrides": overrides}} if secret else {},
        )
        session.add(template)
        await session.flush()
        deployment = Deployment(
            user_id=owner_id,
            template_id=template.id,
            deployment_name=f"d-{uuid.uuid4().hex[:8]}",
            status="succeeded",
            workflow_id=f"wf-{uuid.uuid4()}",
            configuration={"hush": "s3cret", "open": "shown", "db_password": "pw", **ODD_VALUES},
            expires_at=WHEN + timedelta(days=3650),
        )
        session.add(deployment)
        await session.flush()
        for n in range(2):
            session.add(
                DiskAllocation(
                    deployment_id=deployment.id,
                    disk_type="ssd",
                    size_gb=10 + n,
                    mount_point=f"/data{n}",
                    volume_group="vg",
                    logical_volume=f"lv{n}",
                    filesystem_type="ext4",
                    allocation_params={"stripe": n, "ratio": 0.1},
                    state="allocated",
                    state_changed_at=WHEN + timedelta(microseconds=n),
                )
            )
        for n in range(3):
            session.add(
                DeploymentHistory(
                    deployment_id=deployment.id,
                    event_key=f"k{n}",
                    status="running",
                    message=f"step {n}",
                    details={"n": n, "f": n / 3},
                    created_at=WHEN.replace(microsecond=0) + timedelta(seconds=n),
                )
            )
        return deployment.id


def _views(deployment_id: int) -> list[str]:
    return [
        f"/api/deployments/{deployment_id}",
        "/api/deployments",
        f"/api/deployments/{deployment_id}/history",
    ]


async def test_each_view_answers_the_bytes_its_model_gives_on_rows_of_the_database(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker, settings: Settings
) -> None:
    """Read back through the session's read (the one the operations use) and its model."""
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id, secret=True)
    detail = await api.get(f"/api/deployments/{deployment_id}", headers=operator.headers)
    assert detail.status_code == 200, detail.text
    assert detail.headers["content-type"] == "application/json"
    async with sessionmaker() as session:
        user = await session.get(User, operator.id)
        assert user is not None
        row = await deployment_detail(session, user, deployment_id)
    assert row is not None
    assert detail.content == DETAIL.dump_json(DETAIL.validate_python(with_links(row, settings)))

    page = await api.get("/api/deployments", headers=operator.headers)
    history = await api.get(f"/api/deployments/{deployment_id}/history", headers=operator.headers)
    assert page.content == PAGE.dump_json(PAGE.validate_json(page.content))
    assert history.content == HISTORY.dump_json(HISTORY.validate_json(history.content))
    assert [item["id"] for item in page.json()["items"]] == [deployment_id]
    assert [entry["message"] for entry in history.json()] == ["step 0", "step 1", "step 2"]


async def test_declared_and_named_secrets_are_masked_in_the_detail(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id, secret=True)
    detail = await api.get(f"/api/deployments/{deployment_id}", headers=operator.headers)
    configuration = detail.json()["configuration"]
    assert configuration["hush"] == "********"  # declared writeOnly by its template
    assert configuration["db_password"] == "********"  # named a secret by its key
    assert configuration["open"] == "shown"
    assert "s3cret" not in detail.text and '"pw"' not in detail.text


async def test_a_disabled_user_is_401_on_every_view_even_with_a_bad_parameter(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id)
    for url in _views(deployment_id):
        assert (await api.get(url, headers=operator.headers)).status_code == 200
    async with sessionmaker.begin() as session:
        await session.execute(update(User).where(User.id == operator.id).values(is_active=False))
    bad_parameters = [
        "/api/deployments/0",
        "/api/deployments?limit=0",
        "/api/deployments?cursor=not-a-cursor",
        f"/api/deployments/{deployment_id}/history?limit=0",
        f"/api/deployments/{deployment_id}/history?limt=5",
    ]
    for url in [*_views(deployment_id), *bad_parameters]:
        refused = await api.get(url, headers=operator.headers)
        assert refused.status_code == 401, (url, refused.text)
        assert refused.json() == {"detail": "Not authenticated"}
        assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_a_bad_parameter_is_still_422_for_a_user_let_in(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id)
    cursor = await api.get("/api/deployments?cursor=not-a-cursor", headers=operator.headers)
    assert cursor.status_code == 422
    assert cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    limit = await api.get(
        f"/api/deployments/{deployment_id}/history?limit=0", headers=operator.headers
    )
    assert limit.status_code == 422
    assert limit.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_no_token_a_forged_one_or_an_unknown_user_is_401(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker, settings: Settings
) -> None:
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id)
    tokens = {
        "none": {},
        "forged": {"Authorization": f"Bearer {create_access_token(operator.id, 'x' * 40, 5)}"},
        "unknown": {
            "Authorization": f"Bearer {create_access_token(10**6, settings.secret_key, 5)}"
        },
        "expired": {
            "Authorization": f"Bearer {create_access_token(operator.id, settings.secret_key, -1)}"
        },
    }
    for name, headers in tokens.items():
        for url in _views(deployment_id):
            refused = await api.get(url, headers=headers)
            assert refused.status_code == 401, (name, url, refused.text)


async def test_another_operators_deployment_is_404_and_unlisted_and_an_admin_sees_it(
    api: httpx.AsyncClient, make_user: Any, sessionmaker: SessionMaker
) -> None:
    owner, other, admin = (
        await make_user("operator"),
        await make_user("operator"),
        await make_user(Role.ADMIN.value),
    )
    deployment_id = await _deployment(sessionmaker, owner.id)
    for url in (f"/api/deployments/{deployment_id}", f"/api/deployments/{deployment_id}/history"):
        hidden = await api.get(url, headers=other.headers)
        assert hidden.status_code == 404, hidden.text
        assert hidden.json() == {"detail": "deployment not found"}
        assert (await api.get(url, headers=admin.headers)).status_code == 200
    listed = await api.get("/api/deployments", headers=other.headers)
    assert listed.json() == {"items": [], "next_cursor": None}
    admin_list = await api.get("/api/deployments", headers=admin.headers)
    assert [item["id"] for item in admin_list.json()["items"]] == [deployment_id]
    # A role taken away is taken at once: the statement reads the role, not the token.
    async with sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.id == admin.id).values(role=Role.OPERATOR.value)
        )
    demoted = await api.get(f"/api/deployments/{deployment_id}", headers=admin.headers)
    assert demoted.status_code == 404


async def test_connections_lost_under_the_views_are_answered_never_a_500_then_served(
    settings: Settings, engine: AsyncEngine, sessionmaker: SessionMaker, make_user: Any
) -> None:
    """As when the database restarts: the API's pooled connections are killed under it. A view
    whose asyncpg connection died hands the statement to SQLAlchemy: answered on a new
    connection, or 503 while the pool's others are found dead too."""
    operator = await make_user("operator")
    deployment_id = await _deployment(sessionmaker, operator.id)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            before = await _backends(engine)
            # Several connections in the pool: the views at once.
            urls = _views(deployment_id) * 3
            answers = await asyncio.gather(*(http.get(u, headers=operator.headers) for u in urls))
            assert {answer.status_code for answer in answers} == {200}
            api_backends = await _backends(engine) - before
            assert api_backends, "the API holds no pooled connection to kill"
            async with engine.connect() as connection:
                for pid in api_backends:
                    await connection.execute(
                        text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                    )

            async def gone() -> bool:
                return not api_backends & await _backends(engine)

            await wait_for(gone)
            for url in _views(deployment_id):
                during = await http.get(url, headers=operator.headers)
                assert during.status_code in (200, 503), during.text
            for url in _views(deployment_id):
                after = await http.get(url, headers=operator.headers)
                assert after.status_code == 200, after.text


async def _backends(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        return {int(pid) for (pid,) in rows}
