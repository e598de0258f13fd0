"""The callback secret is not the API's signing key, and /docs loads nothing from elsewhere.

Attacks: a callback signed with a token derived from the JWT key (the key the worker used to hold)
is refused; the API will not start with one secret in both roles, nor the worker without its own;
/docs is off unless asked for, and when on it is served from local files under a CSP that allows
no other origin and no inline script.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.security import create_access_token
from db.models import DeploymentHistory
from db.session import SessionMaker
from domain.callback_tokens import CallbackSecretError, callback_token
from settings import Settings
from tests.callback_events import event, signed
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.statuses import DeploymentStatus as S
from worker import run_worker

STARTED = [event(1, "playbook_on_start")]


@pytest.fixture
async def queued(
    api: httpx.AsyncClient, worker: None, make_user: Any, make_template: Any
) -> dict[str, Any]:
    operator = await make_user("operator")
    created = await api.post(
        "/api/deployments",
        json={"template_id": await make_template(), "deployment_name": "pg-one"},
        headers=operator.headers,
    )
    assert created.status_code == 201, created.text
    deployment = created.json()

    async def is_queued() -> bool:
        r = await api.get(f"/api/deployments/{deployment['id']}", headers=operator.headers)
        return bool(r.json()["status"] == S.QUEUED)

    await wait_for(is_queued)
    return {**deployment, "headers": operator.headers}


async def callback_rows(sessionmaker: SessionMaker, deployment_id: int) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(DeploymentHistory)
            .where(
                DeploymentHistory.deployment_id == deployment_id,
                DeploymentHistory.event_key.like("event:%"),
            )
        )
    return int(count or 0)


async def test_a_callback_signed_with_a_token_of_the_jwt_key_is_refused(
    api: httpx.AsyncClient,
    queued: dict[str, Any],
    settings: Settings,
    sessionmaker: SessionMaker,
) -> None:
    url = f"/api/deployments/{queued['id']}/callback"
    forged = callback_token(settings.secret_key, queued["id"], queued["workflow_id"])
    body, headers = signed(forged, {"events": STARTED})
    refused = await api.post(url, content=body, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json() == {"detail": "invalid signature"}
    assert await callback_rows(sessionmaker, queued["id"]) == 0

    # The run's own token, derived from the callback secret, is accepted.
    token = callback_token(settings.callback_secret, queued["id"], queued["workflow_id"])
    body, headers = signed(token, {"events": STARTED})
    accepted = await api.post(url, content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert await callback_rows(sessionmaker, queued["id"]) == 1


async def test_the_worker_hands_out_tokens_of_the_callback_secret_only(
    queued: dict[str, Any], runner: RecordingRunnerDouble, settings: Settings
) -> None:
    [request] = runner.triggers
    args = (queued["id"], queued["workflow_id"], request.run)
    assert request.callback_token == callback_token(settings.callback_secret, *args)
    assert request.callback_token != callback_token(settings.secret_key, *args)


def test_the_api_refuses_one_secret_in_both_roles(settings: Settings) -> None:
    with pytest.raises(CallbackSecretError, match="must differ from PROVISIO_SECRET_KEY"):
        create_app(settings.model_copy(update={"callback_secret": settings.secret_key}))


@pytest.mark.parametrize("callback_secret", ["", "short"])
def test_the_api_refuses_a_missing_or_short_callback_secret(
    settings: Settings, callback_secret: str
) -> None:
    with pytest.raises(CallbackSecretError, match="PROVISIO_CALLBACK_SECRET"):
        create_app(settings.model_copy(update={"callback_secret": callback_secret}))


async def test_the_worker_refuses_to_start_without_a_callback_secret(settings: Settings) -> None:
    # Before it connects anywhere: no deployment gets a run whose callbacks cannot be checked.
    with pytest.raises(CallbackSecretError, match="PROVISIO_CALLBACK_SECRET"):
        await run_worker(settings.model_copy(update={"callback_secret": ""}))


async def test_an_api_token_made_with_the_callback_secret_signs_no_one_in(
    api: httpx.AsyncClient, make_user: Any, settings: Settings
) -> None:
    # The other direction: the worker's secret mints no sign-in.
    user = await make_user("admin")
    forged = create_access_token(user.id, settings.callback_secret, 5)
    me = await api.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert me.status_code == 401, me.text


# --- /docs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect", "/docs/init.js"])
async def test_docs_are_off_by_default(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Not Found"}


async def test_the_openapi_document_stays(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Provisio"


@pytest.fixture
async def docs_api(settings: Settings) -> Any:
    app = create_app(settings.model_copy(update={"api_docs": True}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class Resources(HTMLParser):
    """Every URL the page loads (src, href) and every inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for key, value in attrs if key in ("src", "href") and value]
        self._in_script_without_src = tag == "script" and not values.get("src")
        if any(key.startswith("on") for key in values):
            self.inline_scripts += 1

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


async def test_docs_when_on_load_only_local_files_under_a_strict_csp(docs_api: Any) -> None:
    page = await docs_api.get("/docs")
    assert page.status_code == 200, page.text
    csp = csp_directives(page.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    # No origin but this one anywhere in the policy, no wildcard, no eval.
    for values in csp.values():
        for value in values:
            assert not re.match(r"^(https?:|\*|//)", value), value
            assert value not in ("'unsafe-eval'", "'strict-dynamic'"), value
    assert page.headers["x-content-type-options"] == "nosniff"

    resources = Resources()
    resources.feed(page.text)
    assert resources.inline_scripts == 0
    assert resources.urls, page.text
    for url in resources.urls:
        # Paths on this origin, or the empty data: icon (no request at all).
        assert url.startswith("/") and not url.startswith("//") or url == "data:,", url
        if url.startswith("/"):
            asset = await docs_api.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
    # The start-up script points Swagger UI at this API's own document.
    init = await docs_api.get("/docs/init.js")
    assert "'/openapi.json'" in init.text and "http" not in init.text


@pytest.mark.parametrize(
    "name", ["redoc.standalone.js", "..%2F..%2Fsettings.py", "%2Fetc%2Fpasswd", "favicon.png"]
)
async def test_docs_serve_only_their_two_files(docs_api: Any, name: str) -> None:
    response = await docs_api.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
