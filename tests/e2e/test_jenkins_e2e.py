"""End to end through Jenkins' HTTP API: HTTP API → DeployWorkflow → python-jenkins → the Jenkins
double (it runs the Jenkinsfile's entry script) → ansible-playbook → signed callback plugin → API
→ signal → result. Only Jenkins itself is a double: it cannot run on these machines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from db.session import SessionMaker
from pipeline.jenkins_runner import JenkinsRunner
from settings import Settings
from tests.e2e.test_local_runner_e2e import _final, _small_template
from tests.jenkins_double import JenkinsDouble, running_double
from vocabulary.callback_events import DATA_KEYS
from worker import build_worker


@pytest.fixture
def jenkins(tmp_path: Path) -> Iterator[JenkinsDouble]:
    agent_env = {
        "PROVISIO_DISK_BACKEND": "directory",
        "PROVISIO_SANDBOX_ROOT": str(tmp_path / "sandbox"),
    }
    yield from running_double(tmp_path / "jenkins", agent_env=agent_env)


@pytest.fixture
async def jenkins_worker(
    client: Client, settings: Settings, sessionmaker: SessionMaker, jenkins: JenkinsDouble
) -> AsyncIterator[None]:
    settings.jenkins_url = jenkins.url
    settings.jenkins_user = jenkins.username
    settings.jenkins_token = jenkins.password
    settings.default_callback_timeout_s = 240
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, JenkinsRunner(settings), executor):
            yield


async def _deploy(
    live_api: str, account: Any, template_id: int, name: str
) -> tuple[Any, list[Any]]:
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await http.post(
            "/api/deployments",
            json={"template_id": template_id, "deployment_name": name},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        final = await _final(http, account, created.json()["id"])
        history = await http.get(f"/api/deployments/{final['id']}/history", headers=account.headers)
        return final, history.json()


async def test_jenkins_build_runs_the_playbook_and_the_plugin_reports_back(
    live_api: str,
    jenkins_worker: None,
    jenkins: JenkinsDouble,
    make_user: Any,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/app"])
    final, history = await _deploy(live_api, operator, template_id, "via-jenkins")
    messages = [row["message"] for row in history]
    assert final["status"] == "succeeded", messages
    # The queue item was recorded first, then the build it became.
    assert messages[2] == "Pipeline triggered (queue:1)"
    assert final["jenkins_job_id"] == "build:1"
    assert messages.count("Playbook finished") == 1
    # The build's copy of the plugin found the callback contract beside playbooks/ (the image
    # carries vocabulary/), so its results arrive whole.
    results = [row["details"] for row in history if row["message"].startswith("ok: localhost")]
    assert results and all(
        row["data"]["task_uuid"] and set(row["data"]) <= DATA_KEYS for row in results
    )
    assert len(jenkins.build_requests) == 1
    assert (tmp_path / "sandbox" / str(final["id"]) / "data" / "app").is_dir()


async def test_a_build_that_fails_before_ansible_fails_the_deployment(
    live_api: str,
    jenkins_worker: None,
    jenkins: JenkinsDouble,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    jenkins.fail_before_script = True
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/app"])
    final, history = await _deploy(live_api, operator, template_id, "broken-agent")
    assert final["status"] == "failed"
    assert history[-1]["message"].startswith("Pipeline failed before reporting: build #1 FAILURE")
