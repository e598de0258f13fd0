"""The Jenkins runner against the Jenkins double, over real HTTP with python-jenkins; the double's
builds run the job's real entry script (jenkins_job/run_deployment.py), and some run Ansible."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from jenkins import Jenkins, JenkinsException  # type: ignore[attr-defined]

from pipeline.jenkins_runner import JenkinsRunner, _run_of
from pipeline.runner import PipelineRequest
from settings import Settings
from tests.jenkins_double import REPO_ROOT as REPO
from tests.jenkins_double import JenkinsDouble, running_double
from vocabulary.runs import RunAction, RunRef, RunState, RunStatus

JOB_PARAMETERS = {"DEPLOYMENT_ID", "ACTION", "RUN", "CALLBACK_URL", "CALLBACK_TOKEN", "VARS_JSON"}
TOKEN = "callback-token-0123456789abcdef"


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def jenkins_double(tmp_path: Path) -> Iterator[JenkinsDouble]:
    yield from running_double(tmp_path / "jenkins")


def settings_for(double: JenkinsDouble, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jenkins_url": double.url,
        "jenkins_user": double.username,
        "jenkins_token": double.password,
        "jenkins_job": double.job,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def jenkins_runner(jenkins_double: JenkinsDouble) -> JenkinsRunner:
    return JenkinsRunner(settings_for(jenkins_double), timeout_s=10)


def request_for(
    deployment_id: int,
    *,
    name: str = "shop",
    declared_id: int | None = None,
    disks: list[dict[str, Any]] | None = None,
    callback_url: str = "http://127.0.0.1:9/api/deployments/0/callback",
    run: int = 1,
    action: RunAction = RunAction.DEPLOY,
) -> PipelineRequest:
    """Shaped like activities/pipeline_activities.py's requests."""
    return PipelineRequest(
        deployment_id=deployment_id,
        workflow_id=f"deployment-{deployment_id}",
        callback_url=callback_url,
        callback_token=TOKEN,
        action=action,
        run=run,
        variables={
            "provisio_deployment": {
                "id": deployment_id if declared_id is None else declared_id,
                "name": name,
                "template": "web-small",
                "service_type": "web",
                "configuration": {"replicas": 2, "note": "ünïcode & 'quotes' \"too\""},
            },
            "provisio_disks": disks or [],
        },
    )


def start_once(runner: JenkinsRunner, request: PipelineRequest) -> RunRef:
    """What the start_pipeline activity does, attempt after attempt."""
    return runner.find_run(request.deployment_id, request.run) or runner.trigger(request)


def wait_for_status(
    runner: JenkinsRunner, ref: RunRef, until: Any, timeout: float = 60.0
) -> RunStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = runner.status(ref)
        if until(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{ref.job_id} still {status} after {timeout}s")
        time.sleep(0.05)


def final(runner: JenkinsRunner, ref: RunRef, timeout: float = 60.0) -> RunStatus:
    return wait_for_status(runner, ref, lambda s: s.state.is_final, timeout)


def running(runner: JenkinsRunner, ref: RunRef) -> RunStatus:
    return wait_for_status(runner, ref, lambda s: s.state is not RunState.QUEUED)


# -- trigger, parameters, crumb ---------------------------------------------------------------


def test_trigger_queues_one_build_with_the_six_parameters_in_the_body(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.hold_queue = True
    request = request_for(42, name="shop&VARS_JSON=x; $(id) {{ 7 * 7 }}")

    ref = jenkins_runner.trigger(request)

    assert ref == RunRef(job_id="queue:1", url=f"{jenkins_double.url}job/provisio-deploy/")
    [sent] = jenkins_double.build_requests
    # Only the job's six parameters, each once, in the form body: nothing in the URL.
    assert sent.query == {}
    assert sent.content_type == "application/x-www-form-urlencoded"
    assert set(sent.form) == JOB_PARAMETERS
    assert sent.form["DEPLOYMENT_ID"] == ["42"]
    assert sent.form["ACTION"] == ["deploy"]
    assert sent.form["RUN"] == ["1"]
    assert sent.form["CALLBACK_URL"] == [request.callback_url]
    assert sent.form["CALLBACK_TOKEN"] == [TOKEN]
    # All the user data is one parameter: one JSON string of the variables.
    assert sent.form["VARS_JSON"] == [json.dumps(request.variables)]
    assert json.loads(sent.form["VARS_JSON"][0]) == request.variables
    # The POST carried the crumb of its session (the double refuses it otherwise).
    assert sent.crumb is not None
    assert jenkins_double.rejected_posts == []
    assert jenkins_runner.status(ref) == RunStatus(
        RunState.QUEUED, reason="Waiting for next available executor"
    )
    assert jenkins_double.builds() == []


def test_a_post_without_the_crumb_is_refused(jenkins_double: JenkinsDouble) -> None:
    response = requests.post(
        f"{jenkins_double.url}job/provisio-deploy/buildWithParameters",
        auth=(jenkins_double.username, jenkins_double.password),
        data={"DEPLOYMENT_ID": "42"},
        timeout=10,
    )
    assert response.status_code == 403
    assert jenkins_double.rejected_posts == ["/job/provisio-deploy/buildWithParameters"]
    assert jenkins_double.build_requests == []


def test_each_call_gets_a_fresh_crumb_so_an_expired_session_does_not_matter(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.hold_queue = True
    jenkins_runner.trigger(request_for(1))
    jenkins_double.expire_sessions()
    assert jenkins_runner.trigger(request_for(2)).job_id == "queue:2"

    # Why: one long-lived python-jenkins client keeps its first crumb for good.
    shared = Jenkins(jenkins_double.url, jenkins_double.username, jenkins_double.password, 10)
    runner_with_shared_client = JenkinsRunner(settings_for(jenkins_double), server=shared)
    runner_with_shared_client.trigger(request_for(3))
    jenkins_double.expire_sessions()
    with pytest.raises(JenkinsException, match="403"):
        runner_with_shared_client.trigger(request_for(4))


def test_wrong_credentials_fail_loudly(jenkins_double: JenkinsDouble) -> None:
    runner = JenkinsRunner(settings_for(jenkins_double, jenkins_token="wrong"), timeout_s=10)
    with pytest.raises(JenkinsException, match="401"):
        runner.find_run(42, 1)
    with pytest.raises(ValueError, match="PROVISIO_JENKINS_TOKEN"):
        JenkinsRunner(settings_for(jenkins_double, jenkins_token=""))


# -- find_run ---------------------------------------------------------------------------------


def test_find_run_finds_the_queue_item_then_its_build_and_nothing_triggers_twice(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.hold_queue = jenkins_double.hold_builds = True
    other = jenkins_runner.trigger(request_for(7))
    request = request_for(42)

    ref = start_once(jenkins_runner, request)
    assert start_once(jenkins_runner, request) == ref  # a retried activity, still queued
    assert jenkins_runner.find_run(42, 1) == ref
    assert jenkins_runner.find_run(7, 1) == other
    assert jenkins_runner.find_run(8, 1) is None
    assert jenkins_runner.find_run(42, 2) is None  # another run of the same deployment

    jenkins_double.release_queue()
    assert running(jenkins_runner, ref).state is RunState.RUNNING
    build = jenkins_double.queue_item(2).build
    assert build is not None
    found = jenkins_runner.find_run(42, 1)
    assert found == RunRef(
        job_id=f"build:{build.number}",
        url=f"{jenkins_double.url}job/provisio-deploy/{build.number}/",
    )
    assert start_once(jenkins_runner, request) == found  # a retried activity, now a build
    assert jenkins_runner.status(found).state is RunState.RUNNING
    assert len(jenkins_double.build_requests) == 2  # deployments 7 and 42, once each
    assert sorted(b.parameters["DEPLOYMENT_ID"] for b in jenkins_double.builds()) == ["42", "7"]


def test_the_callback_token_is_not_shown_by_the_api(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.fail_before_script = True
    ref = jenkins_runner.trigger(request_for(42))
    final(jenkins_runner, ref)
    auth = (jenkins_double.username, jenkins_double.password)
    for path in ("queue/item/1/api/json", "job/provisio-deploy/1/api/json"):
        text = requests.get(f"{jenkins_double.url}{path}", auth=auth, timeout=10).text
        assert "CALLBACK_TOKEN" in text
        assert TOKEN not in text


# -- status -----------------------------------------------------------------------------------


def test_status_queued_until_the_item_becomes_a_build(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.queue_delay_s = 1.0
    jenkins_double.fail_before_script = True
    ref = jenkins_runner.trigger(request_for(42))

    assert jenkins_runner.status(ref).state is RunState.QUEUED
    assert final(jenkins_runner, ref).state is RunState.FAILED
    assert jenkins_double.queue_item(1).build is not None


def test_status_of_a_build_that_fails_before_the_script(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.fail_before_script = True
    ref = jenkins_runner.trigger(request_for(42))

    status = final(jenkins_runner, ref)

    url = f"{jenkins_double.url}job/provisio-deploy/1/"
    assert status == RunStatus(RunState.FAILED, reason=f"build #1 FAILURE (console: {url}console)")
    assert not jenkins_double.build(1).script_started
    assert jenkins_runner.status(RunRef("build:1")) == status  # the same from either job id


def test_status_of_a_build_whose_entry_script_refuses_the_input(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    # The real entry script: provisio_deployment.id must match DEPLOYMENT_ID (exit code 65).
    ref = jenkins_runner.trigger(request_for(42, declared_id=43))

    status = final(jenkins_runner, ref)

    build = jenkins_double.build(1)
    assert build.returncode == 65, jenkins_double.console_text(1)
    assert "refusing to run" in jenkins_double.console_text(1)
    assert status.state is RunState.FAILED
    assert status.reason is not None and status.reason.startswith("build #1 FAILURE")
    assert not (build.workspace / "vars.json").exists()  # post { cleanup }


def test_status_running(jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner) -> None:
    jenkins_double.hold_builds = True
    ref = jenkins_runner.trigger(request_for(42))
    assert running(jenkins_runner, ref) == RunStatus(RunState.RUNNING)
    assert jenkins_runner.status(RunRef("build:1")) == RunStatus(RunState.RUNNING)


def test_status_missing(jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner) -> None:
    jenkins_double.hold_builds = True
    ref = jenkins_runner.trigger(request_for(42))
    running(jenkins_runner, ref)

    jenkins_double.delete_build(1)

    assert jenkins_runner.status(ref).state is RunState.MISSING
    assert jenkins_runner.status(RunRef("build:1")) == RunStatus(
        RunState.MISSING, reason="build #1 of provisio-deploy does not exist"
    )
    assert jenkins_runner.status(RunRef("queue:99")).state is RunState.MISSING
    assert jenkins_runner.status(RunRef("local-42")).state is RunState.MISSING


def test_a_queue_ref_still_leads_to_its_build_after_jenkins_forgot_the_item(
    jenkins_double: JenkinsDouble,
) -> None:
    jenkins_double.fail_before_script = True
    runner = JenkinsRunner(settings_for(jenkins_double), timeout_s=10)
    refs = [runner.trigger(request_for(n)) for n in (41, 42, 43)]
    for ref in refs:
        final(runner, ref)
    build = jenkins_double.queue_item(2).build
    assert build is not None
    jenkins_double.forget_queue_item(2)  # five minutes later, or after a Jenkins restart

    # A worker that never saw the item become a build finds it through the builds' queueId.
    fresh = JenkinsRunner(settings_for(jenkins_double), timeout_s=10)
    url = f"{jenkins_double.url}job/provisio-deploy/{build.number}/"
    assert fresh.status(refs[1]) == RunStatus(
        RunState.FAILED, reason=f"build #{build.number} FAILURE (console: {url}console)"
    )


def test_errors_other_than_404_are_raised_not_reported_missing(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.hold_builds = True
    ref = jenkins_runner.trigger(request_for(42))
    running(jenkins_runner, ref)

    jenkins_double.fail_paths["/job/provisio-deploy/1/"] = 503  # Jenkins restarting
    with pytest.raises(JenkinsException):
        jenkins_runner.status(RunRef("build:1"))
    fresh = JenkinsRunner(settings_for(jenkins_double), timeout_s=10)
    jenkins_double.fail_paths["/queue/item/"] = 503
    with pytest.raises(JenkinsException):
        fresh.status(ref)

    jenkins_double.fail_paths.clear()
    assert fresh.status(ref).state is RunState.RUNNING


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_queued_item(jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner) -> None:
    jenkins_double.hold_queue = True
    ref = jenkins_runner.trigger(request_for(42))

    jenkins_runner.cancel(ref)

    assert jenkins_double.cancel_requests == [1]
    assert jenkins_double.stop_requests == []
    assert jenkins_runner.status(ref) == RunStatus(
        RunState.ABORTED, reason="queue item 1 was cancelled"
    )
    jenkins_double.release_queue()
    assert jenkins_double.queue_item(1).build is None
    assert jenkins_runner.find_run(42, 1) is None  # a cancelled item is no run
    jenkins_runner.cancel(ref)  # again: nothing to do
    assert jenkins_double.cancel_requests == [1]


@pytest.mark.parametrize("via", ["queue ref", "build ref"])
def test_cancel_a_running_build(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner, via: str
) -> None:
    jenkins_double.hold_builds = True
    ref = jenkins_runner.trigger(request_for(42))
    running(jenkins_runner, ref)
    target = ref if via == "queue ref" else jenkins_runner.find_run(42, 1)
    assert target is not None

    jenkins_runner.cancel(target)

    # cancel returned once Jenkins reported the build ended: no waiting after it.
    assert not jenkins_double.build(1).building
    assert jenkins_double.stop_requests == [1]
    assert jenkins_double.cancel_requests == []
    assert jenkins_runner.status(ref) == RunStatus(RunState.ABORTED, reason="build #1 ABORTED")
    assert not jenkins_double.build(1).script_started
    assert jenkins_runner.status(RunRef("build:1")).state is RunState.ABORTED
    jenkins_runner.cancel(target)  # again: the build has ended, nothing is asked of Jenkins
    assert jenkins_double.stop_requests == [1]


def test_cancel_of_a_run_jenkins_no_longer_knows_is_a_no_op(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_runner.cancel(RunRef("build:5"))
    jenkins_runner.cancel(RunRef("queue:5"))
    jenkins_runner.cancel(RunRef("manual-5"))
    assert jenkins_double.stop_requests == []
    assert jenkins_double.cancel_requests == []


def test_each_run_of_a_deployment_is_its_own_build(
    jenkins_double: JenkinsDouble, jenkins_runner: JenkinsRunner
) -> None:
    jenkins_double.hold_queue = jenkins_double.hold_builds = True
    first = start_once(jenkins_runner, request_for(42, run=1))
    second = start_once(jenkins_runner, request_for(42, run=2, action=RunAction.DESTROY))
    assert first != second
    assert jenkins_runner.find_run(42, 1) == first
    assert jenkins_runner.find_run(42, 2) == second
    assert jenkins_runner.find_run(42, 3) is None
    assert [r.form["ACTION"] for r in jenkins_double.build_requests] == [["deploy"], ["destroy"]]
    assert [r.form["RUN"] for r in jenkins_double.build_requests] == [["1"], ["2"]]

    jenkins_double.release_queue()
    running(jenkins_runner, first)
    running(jenkins_runner, second)
    builds = {b.parameters["RUN"]: b for b in jenkins_double.builds()}
    assert builds["1"].parameters["ACTION"] == "deploy"
    assert builds["2"].parameters["ACTION"] == "destroy"
    assert jenkins_runner.find_run(42, 2) == RunRef(
        f"build:{builds['2'].number}",
        f"{jenkins_double.url}job/provisio-deploy/{builds['2'].number}/",
    )
    # A retried trigger of run 2 finds its build and queues nothing.
    assert start_once(jenkins_runner, request_for(42, run=2, action=RunAction.DESTROY)).job_id == (
        f"build:{builds['2'].number}"
    )
    assert len(jenkins_double.build_requests) == 2


def test_a_build_from_before_the_run_parameter_is_the_first_run() -> None:
    deployment = {"name": "DEPLOYMENT_ID", "value": "42"}
    old = {"actions": [{"parameters": [deployment]}]}
    assert _run_of(old) == ("42", "1")
    new = {"actions": [{"parameters": [deployment, {"name": "RUN", "value": "3"}]}]}
    assert _run_of(new) == ("42", "3")


def blocking_home(tmp_path: Path) -> Path:
    """A PROVISIO_HOME whose deploy.yml blocks in a task (its child ignores SIGTERM)."""
    home = tmp_path / "provisio-home"
    for name in ("jenkins_job", "pipeline", "vocabulary"):
        shutil.copytree(REPO / name, home / name, ignore=shutil.ignore_patterns("__pycache__"))
    playbooks = home / "playbooks"
    (playbooks / "inventory").mkdir(parents=True)
    shutil.copy(REPO / "playbooks" / "ansible.cfg", playbooks)
    shutil.copy(REPO / "playbooks" / "inventory" / "localhost.yml", playbooks / "inventory")
    (playbooks / "deploy.yml").write_text(
        """
- name: Block until stopped
  hosts: all
  gather_facts: false
  tasks:
    - name: Block in a command whose child ignores SIGTERM
      ansible.builtin.command:
        argv: [sh, -c, 'trap "" TERM; sleep 600 & sleep 600']
"""
    )
    return home


def processes_with(mark: bytes) -> list[int]:
    """Live processes whose environment holds `mark`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark not in environ.read_bytes().split(b"\0"):
                continue
            state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(environ.parent.name))
    return found


def test_cancel_stops_a_build_whose_playbook_runs_and_waits_until_it_ended(
    tmp_path: Path,
) -> None:
    doubles = running_double(
        tmp_path / "jenkins",
        provisio_home=blocking_home(tmp_path),
        abort_grace_s=1.0,
        agent_env={"PROVISIO_SANDBOX_ROOT": str(tmp_path / "sandbox")},
    )
    jenkins_double = next(doubles)
    try:
        runner = JenkinsRunner(settings_for(jenkins_double), timeout_s=10, cancel_timeout_s=60)
        ref = runner.trigger(request_for(42))
        running(runner, ref)
        mark = f"JENKINS_NODE_COOKIE={jenkins_double.build(1).cookie}".encode()
        deadline = time.monotonic() + 120
        while len(processes_with(mark)) < 4:  # entry script, ansible-playbook, sh, sleeps...
            assert time.monotonic() < deadline, jenkins_double.console_text(1)
            time.sleep(0.2)
        assert jenkins_double.build(1).script_started

        runner.cancel(ref)

        assert not jenkins_double.build(1).building
        assert runner.status(ref) == RunStatus(RunState.ABORTED, reason="build #1 ABORTED")
        assert processes_with(mark) == []
        assert jenkins_double.stop_requests == [1]
    finally:
        doubles.close()


def test_the_entry_script_refuses_an_unknown_action(tmp_path: Path) -> None:
    vars_json = tmp_path / "vars.json"
    vars_json.write_text(json.dumps(request_for(42).variables))
    for action in ("rm", "deploy.yml", "../destroy", ""):
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "jenkins_job" / "run_deployment.py"),
                "--action",
                action,
                "--vars-json",
                str(vars_json),
                "--deployment-id",
                "42",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 65, (action, result.stderr)
        assert "refusing to run: unknown action" in result.stderr
    result = subprocess.run(
        [sys.executable, str(REPO / "jenkins_job" / "run_deployment.py"), "--vars-json", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--action" in result.stderr  # it is required


# -- a real deployment ------------------------------------------------------------------------


class CallbackRecorder:
    """Stands in for the API's callback endpoint: records each POST, answers 202."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder._lock:
                    recorder.posts.append((dict(self.headers.items()), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for _, body in self.posts for event in json.loads(body)["events"]]


@pytest.fixture
def callback_recorder() -> Iterator[CallbackRecorder]:
    recorder = CallbackRecorder()
    yield recorder
    recorder.stop()


def test_a_deployment_runs_ansible_through_the_entry_script_and_user_data_stays_literal(
    tmp_path: Path, callback_recorder: CallbackRecorder
) -> None:
    sandbox = tmp_path / "sandbox"
    marker = tmp_path / "MARKER"
    name = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    disk = {
        "disk_type": "ssd",
        "size_gb": 1,
        "mount_point": "/data",
        "volume_group": "vg_app",
        "logical_volume": "lv_data",
        "filesystem_type": "ext4",
        "allocation_params": {},
    }
    # The Jenkins container's environment chooses the backend (docker-compose.yml).
    agent_env = {"PROVISIO_DISK_BACKEND": "directory", "PROVISIO_SANDBOX_ROOT": str(sandbox)}
    doubles = running_double(tmp_path / "jenkins", agent_env=agent_env)
    jenkins_double = next(doubles)
    try:
        runner = JenkinsRunner(
            settings_for(jenkins_double, disk_backend="directory", sandbox_root=sandbox),
            timeout_s=10,
        )
        callback_url = f"{callback_recorder.url}/api/deployments/42/callback"
        request = request_for(42, name=name, disks=[disk], callback_url=callback_url)

        ref = start_once(runner, request)
        status = final(runner, ref, timeout=300)

        console = jenkins_double.console_text(1)
        assert status == RunStatus(RunState.SUCCEEDED), console
        assert jenkins_double.build(1).returncode == 0
        # The template expression was never evaluated: no marker, the name kept verbatim.
        assert not marker.exists()
        state = sandbox / "42" / ".provisio"
        manifest = json.loads((state / "deployment.json").read_text())
        assert manifest["deployment"]["name"] == name
        assert manifest["disks"] == [disk]
        assert (state / "vg_app-lv_data.img").stat().st_size == 1024**3
        assert (sandbox / "42" / "data").is_dir()
        assert not (jenkins_double.build(1).workspace / "vars.json").exists()
        # The callback plugin ran in the build with the token that trigger sent.
        events = callback_recorder.events()
        assert events and events[-1]["event"] == "playbook_on_stats"
        for headers, body in callback_recorder.posts:
            timestamp = headers["X-Provisio-Timestamp"]
            mac = hmac.new(TOKEN.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
            assert headers["X-Provisio-Signature"] == f"sha256={mac.hexdigest()}"
        # Once the build exists, a retried trigger finds it.
        assert start_once(runner, request) == RunRef(
            "build:1", f"{jenkins_double.url}job/provisio-deploy/1/"
        )
        assert len(jenkins_double.build_requests) == 1

        # Run 2 destroys it: the same job, ACTION destroy, playbooks/destroy.yml.
        teardown = request_for(
            42, name=name, disks=[disk], callback_url=callback_url, run=2, action=RunAction.DESTROY
        )
        assert runner.find_run(42, 2) is None
        teardown_ref = start_once(runner, teardown)
        assert final(runner, teardown_ref, timeout=300) == RunStatus(RunState.SUCCEEDED), (
            jenkins_double.console_text(2)
        )
        assert "destroy of deployment 42 (run 2), playbooks/destroy.yml" in (
            jenkins_double.console_text(2)
        )
        assert not (sandbox / "42").exists()
        assert not marker.exists()
    finally:
        doubles.close()
