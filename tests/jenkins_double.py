"""A double of Jenkins for tests: a real HTTP server on 127.0.0.1 that speaks the part of Jenkins'
HTTP API python-jenkins uses for the provisio-deploy job, and runs its builds the way
jenkins_job/Jenkinsfile does. Jenkins itself cannot run here.

What it copies from Jenkins (2.5xx, configured by jenkins_job/casc.yaml):

* Basic auth on every request (401 for wrong credentials, 403 for none). A POST must carry the
  CSRF crumb issued to its web session (`Jenkins-Crumb` header plus the session cookie of the
  `/crumbIssuer/api/json` request); otherwise 403, as for a password login in Jenkins.
* `buildWithParameters` reads the parameters from the query string and the form body, keeps only
  the job's six (a missing one takes its default), refuses an ACTION outside its choices (500, as
  Jenkins' ChoiceParameterDefinition throws) and answers 201 with
  `Location: <root>/queue/item/<id>/`. The password parameter is never shown in the API, like a
  PasswordParameterValue.
* A queue item waits (`why`), then becomes a build (the item turns into a left item whose
  `executable` is the build) or is cancelled (`cancelled: true`). Builds list newest first, at
  most 100, and carry `queueId`, `building`, `result`, `url` and the parameters in `actions`.
* A build does what the Jenkinsfile does: copies the deploy code (jenkins_job/, pipeline/,
  playbooks/, vocabulary/, as PROVISIO_HOME in the image) into a fresh workspace, writes VARS_JSON
  to vars.json, runs `python3 jenkins_job/run_deployment.py --action "$ACTION" --run "$RUN"
  --vars-json "$WORKSPACE/vars.json" --deployment-id "$DEPLOYMENT_ID"` with the parameters and
  PROVISIO_CALLBACK_URL/TOKEN in its environment plus the agent's (`agent_env`:
  PROVISIO_DISK_BACKEND, PROVISIO_SANDBOX_ROOT, ...), sets SUCCESS or FAILURE from the exit code,
  and removes vars.json.
* `/queue/cancelItem?id=N` cancels a waiting item (`cancelled: true`; it never becomes a build).
  `/job/<job>/<n>/stop` stops a build: a build held before its script ends at once, a running
  script's process group gets SIGTERM (SIGKILL after `abort_grace_s`), and the build stays
  `building` until the script is gone, then ends ABORTED.

Behaviours for tests, settable at any time: `queue_delay_s` (time in the queue before a build
starts), `hold_queue` / `release_queue()`, `hold_builds` / `release_builds()` (a build waits in
RUNNING before its script), `fail_before_script` (FAILURE without running Ansible),
`delete_build()` (a build that disappears: 404), `forget_queue_item()` (Jenkins drops left queue
items after five minutes), `fail_paths` (answer a status such as 503 on a path prefix), and
`expire_sessions()` (every issued crumb becomes invalid).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
JENKINS_VERSION = "2.555.1"
CRUMB_FIELD = "Jenkins-Crumb"
SESSION_COOKIE = "JSESSIONID.double"
# The job's parameters as jenkins_job/casc.yaml defines them: name -> (kind, default).
JOB_PARAMETERS = {
    "DEPLOYMENT_ID": ("string", ""),
    "ACTION": ("choice", "deploy"),
    "RUN": ("string", "1"),
    "CALLBACK_URL": ("string", ""),
    "CALLBACK_TOKEN": ("password", ""),
    "VARS_JSON": ("text", "{}"),
}
# A choice parameter's choices; the first is its default.
JOB_CHOICES = {"ACTION": ("deploy", "destroy", "plan")}
_PARAMETER_CLASSES = {
    "string": "hudson.model.StringParameterValue",
    "choice": "hudson.model.StringParameterValue",
    "password": "hudson.model.PasswordParameterValue",
    "text": "hudson.model.TextParameterValue",
}
# What the image carries under PROVISIO_HOME (jenkins_job/Dockerfile), copied into each workspace.
DEPLOY_CODE = ("jenkins_job", "pipeline", "playbooks", "vocabulary")
BUILDS_LISTED = 100


@dataclass
class BuildRequest:
    """One POST to buildWithParameters, as received (for assertions)."""

    query: dict[str, list[str]]
    form: dict[str, list[str]]
    content_type: str | None
    crumb: str | None


@dataclass
class QueueItem:
    id: int
    parameters: dict[str, str]
    queued_at: float
    cancelled: bool = False
    build: Build | None = None


@dataclass
class Build:
    number: int
    queue_id: int
    parameters: dict[str, str]
    started_at: float
    workspace: Path
    console: Path
    building: bool = True
    result: str | None = None
    abort_requested: bool = False
    script_started: bool = False
    returncode: int | None = None
    process: subprocess.Popen[bytes] | None = None
    finished_at: float | None = None
    # Jenkins marks every process of a build with JENKINS_NODE_COOKIE in its environment and
    # kills the processes that carry it (ProcessTreeKiller), wherever they moved.
    cookie: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class JenkinsDouble:
    work_dir: Path
    job: str = "provisio-deploy"
    username: str = "provisio"
    password: str = "provisio-password"
    # The agent's environment (docker-compose gives the Jenkins container PROVISIO_DISK_BACKEND
    # and PROVISIO_SANDBOX_ROOT); PATH, HOME and LANG are set by the double.
    agent_env: dict[str, str] = field(default_factory=dict)
    provisio_home: Path = REPO_ROOT
    queue_delay_s: float = 0.0
    hold_queue: bool = False
    hold_builds: bool = False
    fail_before_script: bool = False
    abort_grace_s: float = 5.0
    # Path prefix -> HTTP status answered instead (e.g. 503 while Jenkins restarts).
    fail_paths: dict[str, int] = field(default_factory=dict)

    build_requests: list[BuildRequest] = field(default_factory=list)
    rejected_posts: list[str] = field(default_factory=list)  # paths refused for a bad crumb
    stop_requests: list[int] = field(default_factory=list)
    cancel_requests: list[int] = field(default_factory=list)

    _queue: dict[int, QueueItem] = field(default_factory=dict)
    _builds: dict[int, Build] = field(default_factory=dict)
    _sessions: dict[str, str] = field(default_factory=dict)  # session id -> crumb
    _next_queue_id: int = 1
    _next_build_number: int = 1
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _threads: list[threading.Thread] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _stopping: bool = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> JenkinsDouble:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="jenkins-double"
        )
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for build in self._builds.values():
                if build.process is not None and build.process.poll() is None:
                    _kill_group(build.process, signal.SIGKILL)
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(30)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    # -- behaviours and inspection --------------------------------------------------------------

    def release_queue(self) -> None:
        with self._cond:
            self.hold_queue = False
            self._cond.notify_all()

    def release_builds(self) -> None:
        with self._cond:
            self.hold_builds = False
            self._cond.notify_all()

    def delete_build(self, number: int) -> None:
        """The build disappears (deleted, rotated away, JENKINS_HOME lost): 404 from now on."""
        with self._cond:
            build = self._builds.pop(number)
            build.abort_requested = True
            if build.process is not None and build.process.poll() is None:
                _kill_group(build.process, signal.SIGKILL)
            self._cond.notify_all()

    def forget_queue_item(self, queue_id: int) -> None:
        """Jenkins forgets a left queue item five minutes after it left (and at a restart)."""
        with self._cond:
            item = self._queue[queue_id]
            assert item.build is not None or item.cancelled, "a waiting item is not forgotten"
            del self._queue[queue_id]

    def expire_sessions(self) -> None:
        """Every web session ends (timeout, restart): crumbs issued so far are no longer valid."""
        with self._cond:
            self._sessions.clear()

    def builds(self) -> list[Build]:
        with self._cond:
            return sorted(self._builds.values(), key=lambda b: b.number)

    def build(self, number: int) -> Build:
        with self._cond:
            return self._builds[number]

    def queue_item(self, queue_id: int) -> QueueItem:
        with self._cond:
            return self._queue[queue_id]

    def console_text(self, number: int) -> str:
        try:
            return self.build(number).console.read_text(errors="replace")
        except OSError:
            return ""

    # -- the API (called with the request already authenticated) --------------------------------

    def _issue_crumb(self) -> tuple[str, str]:
        session, crumb = secrets.token_hex(16), secrets.token_hex(32)
        with self._cond:
            self._sessions[session] = crumb
        return session, crumb

    def _crumb_ok(self, session: str | None, crumb: str | None) -> bool:
        with self._cond:
            expected = self._sessions.get(session or "")
        if expected is None or crumb is None:
            return False
        return secrets.compare_digest(expected, crumb)

    def _parameters(self, request: BuildRequest) -> dict[str, str]:
        """The build's parameters; ValueError for a value a choice parameter does not offer."""
        parameters = {}
        for name, (_kind, default) in JOB_PARAMETERS.items():
            # Jenkins reads request parameters (query string and form alike), first value wins;
            # parameters the job does not define are dropped.
            values = request.query.get(name) or request.form.get(name)
            parameters[name] = values[0] if values else default
            if name in JOB_CHOICES and parameters[name] not in JOB_CHOICES[name]:
                raise ValueError(f"Illegal choice for parameter {name}: {parameters[name]}")
        return parameters

    def _enqueue(self, request: BuildRequest, parameters: dict[str, str]) -> int:
        with self._cond:
            self.build_requests.append(request)
            item = QueueItem(self._next_queue_id, parameters, time.time())
            self._next_queue_id += 1
            self._queue[item.id] = item
            thread = threading.Thread(
                target=self._run_item, args=(item,), name=f"jenkins-double-queue-{item.id}"
            )
            self._threads.append(thread)
            self._cond.notify_all()
        thread.start()
        return item.id

    def _cancel_item(self, queue_id: int) -> None:
        with self._cond:
            self.cancel_requests.append(queue_id)
            item = self._queue.get(queue_id)
            if item is not None and item.build is None:
                item.cancelled = True
                self._cond.notify_all()

    def _stop_build(self, number: int) -> bool:
        with self._cond:
            build = self._builds.get(number)
            if build is None:
                return False
            self.stop_requests.append(number)
            if build.building and not build.abort_requested:
                build.abort_requested = True
                if build.process is not None and build.process.poll() is None:
                    _kill_group(build.process, signal.SIGTERM)
                    killer = threading.Timer(self.abort_grace_s, self._kill_hard, args=(build,))
                    killer.daemon = True
                    killer.start()
                self._cond.notify_all()
            return True

    def _kill_hard(self, build: Build) -> None:
        with self._cond:
            if build.process is not None and build.process.poll() is None:
                _kill_group(build.process, signal.SIGKILL)
                _kill_tree(build.cookie, signal.SIGKILL)

    # -- running builds -------------------------------------------------------------------------

    def _run_item(self, item: QueueItem) -> None:
        with self._cond:
            ready_at = time.monotonic() + self.queue_delay_s
            while not (item.cancelled or self._stopping):
                remaining = ready_at - time.monotonic()
                if not self.hold_queue and remaining <= 0:
                    break
                self._cond.wait(0.05 if self.hold_queue else remaining)
            if item.cancelled or self._stopping:
                return
            number = self._next_build_number
            self._next_build_number += 1
            builds_dir = self.work_dir / "builds" / str(number)
            builds_dir.mkdir(parents=True)
            build = Build(
                number=number,
                queue_id=item.id,
                parameters=dict(item.parameters),
                started_at=time.time(),
                workspace=self.work_dir / "workspace" / f"{self.job}@{number}",
                console=builds_dir / "log",
            )
            self._builds[number] = build
            item.build = build
            self._cond.notify_all()
        try:
            result = self._run_build(build)
        except Exception as exc:  # Jenkins, too, turns an internal error into FAILURE
            _log(build, f"ERROR: {exc!r}")
            result = "FAILURE"
        with self._cond:
            build.result = "ABORTED" if build.abort_requested else result
            build.building = False
            build.finished_at = time.time()
            self._cond.notify_all()

    def _run_build(self, build: Build) -> str:
        workspace = build.workspace
        # stage('Prepare'): a clean copy of PROVISIO_HOME, then the variables into vars.json.
        workspace.mkdir(parents=True)
        for name in DEPLOY_CODE:
            shutil.copytree(
                self.provisio_home / name,
                workspace / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        vars_json = workspace / "vars.json"
        vars_json.write_text(build.parameters["VARS_JSON"] or "{}", encoding="utf-8")
        try:
            if self.fail_before_script:
                _log(build, "ERROR: the Prepare stage failed (Jenkins double: fail_before_script)")
                return "FAILURE"
            with self._cond:
                while self.hold_builds and not (build.abort_requested or self._stopping):
                    self._cond.wait(0.05)
                if build.abort_requested or self._stopping:
                    return "ABORTED"
                # stage('Deploy')
                env = self._build_env(build)
                python3 = shutil.which("python3", path=env["PATH"]) or "python3"
                argv = [
                    python3,
                    "jenkins_job/run_deployment.py",
                    "--action",
                    build.parameters["ACTION"],
                    "--run",
                    build.parameters["RUN"],
                    "--vars-json",
                    str(vars_json),
                    "--deployment-id",
                    build.parameters["DEPLOYMENT_ID"],
                ]
                with open(build.console, "ab") as console:
                    build.process = subprocess.Popen(
                        argv,
                        cwd=workspace,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=console,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Jenkins kills the whole process tree
                    )
                build.script_started = True
                self._cond.notify_all()
            build.returncode = build.process.wait()
            _log(build, f"script exited with {build.returncode}")
            # The step is over: Jenkins kills what the script left running before the build ends.
            deadline = time.monotonic() + 30
            while _kill_tree(build.cookie, signal.SIGKILL) and time.monotonic() < deadline:
                time.sleep(0.05)
            return "SUCCESS" if build.returncode == 0 else "FAILURE"
        finally:
            # post { cleanup }: the vars file holds user data.
            vars_json.unlink(missing_ok=True)

    def _build_env(self, build: Build) -> dict[str, str]:
        home = self.work_dir / "home"
        home.mkdir(exist_ok=True)
        env = {
            # The image puts its Ansible venv first on PATH; here the project's venv is that.
            "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)]),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "ANSIBLE_NOCOLOR": "1",
        }
        env.update(self.agent_env)
        # Jenkins exports every build parameter, and the build's own variables.
        env.update(build.parameters)
        env.update(
            {
                "WORKSPACE": str(build.workspace),
                "BUILD_NUMBER": str(build.number),
                "BUILD_ID": str(build.number),
                "JOB_NAME": self.job,
                "BUILD_URL": self._build_url(build.number),
                "JENKINS_URL": self.url,
                "JENKINS_NODE_COOKIE": build.cookie,
                # The Jenkinsfile's `export`s.
                "PROVISIO_CALLBACK_URL": build.parameters["CALLBACK_URL"],
                "PROVISIO_CALLBACK_TOKEN": build.parameters["CALLBACK_TOKEN"],
            }
        )
        return env

    # -- JSON views -----------------------------------------------------------------------------

    def _job_url(self) -> str:
        return f"{self.url}job/{self.job}/"

    def _build_url(self, number: int) -> str:
        return f"{self._job_url()}{number}/"

    def _task(self) -> dict[str, Any]:
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            "name": self.job,
            "url": self._job_url(),
            "color": "blue",
        }

    @staticmethod
    def _parameters_action(parameters: dict[str, str]) -> dict[str, Any]:
        values = []
        for name, value in parameters.items():
            kind = JOB_PARAMETERS[name][0]
            shown: dict[str, Any] = {"_class": _PARAMETER_CLASSES[kind], "name": name}
            if kind != "password":
                shown["value"] = value
            values.append(shown)
        return {"_class": "hudson.model.ParametersAction", "parameters": values}

    def _actions(self, parameters: dict[str, str]) -> list[dict[str, Any]]:
        cause = {
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": f"Started by user {self.username}",
            "userId": self.username,
        }
        return [
            self._parameters_action(parameters),
            {"_class": "hudson.model.CauseAction", "causes": [cause]},
        ]

    def _queue_item_json(self, item: QueueItem) -> dict[str, Any]:
        data: dict[str, Any] = {
            "actions": self._actions(item.parameters),
            "blocked": False,
            "buildable": not self.hold_queue,
            "id": item.id,
            "inQueueSince": int(item.queued_at * 1000),
            "params": "".join(
                f"\n{name}={'****' if JOB_PARAMETERS[name][0] == 'password' else value}"
                for name, value in item.parameters.items()
            ),
            "stuck": False,
            "task": self._task(),
            "url": f"queue/item/{item.id}/",
        }
        if item.build is None and not item.cancelled:
            data["_class"] = "hudson.model.Queue$WaitingItem"
            data["why"] = "Waiting for next available executor"
            data["timestamp"] = int(item.queued_at * 1000)
        else:
            data["_class"] = "hudson.model.Queue$LeftItem"
            data["why"] = None
            data["cancelled"] = item.cancelled
            data["executable"] = (
                None
                if item.build is None
                else {
                    "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                    "number": item.build.number,
                    "url": self._build_url(item.build.number),
                }
            )
        return data

    def _build_json(self, build: Build) -> dict[str, Any]:
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
            "actions": self._actions(build.parameters),
            "artifacts": [],
            "building": build.building,
            "description": None,
            "displayName": f"#{build.number}",
            "duration": int(((build.finished_at or time.time()) - build.started_at) * 1000)
            if not build.building
            else 0,
            "estimatedDuration": -1,
            "fullDisplayName": f"{self.job} #{build.number}",
            "id": str(build.number),
            "keepLog": False,
            "number": build.number,
            "queueId": build.queue_id,
            "result": None if build.building else build.result,
            "timestamp": int(build.started_at * 1000),
            "url": self._build_url(build.number),
            "inProgress": build.building,
        }

    def _job_json(self) -> dict[str, Any]:
        builds = sorted(self._builds.values(), key=lambda b: b.number, reverse=True)

        def short(build: Build) -> dict[str, Any]:
            return {
                "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                "number": build.number,
                "url": self._build_url(build.number),
            }

        waiting = [i for i in self._queue.values() if i.build is None and not i.cancelled]
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            "name": self.job,
            "fullName": self.job,
            "url": self._job_url(),
            "buildable": True,
            "builds": [short(b) for b in builds[:BUILDS_LISTED]],
            "firstBuild": short(builds[-1]) if builds else None,
            "lastBuild": short(builds[0]) if builds else None,
            "inQueue": bool(waiting),
            "nextBuildNumber": self._next_build_number,
            "property": [
                {
                    "_class": "hudson.model.ParametersDefinitionProperty",
                    "parameterDefinitions": [
                        {
                            "name": name,
                            "type": kind,
                            "defaultParameterValue": {"name": name, "value": default}
                            if kind != "password"
                            else {"name": name},
                        }
                        for name, (kind, default) in JOB_PARAMETERS.items()
                    ],
                }
            ],
        }

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Any:
        """(status, JSON or text, extra headers) for a GET or a crumb-checked POST."""
        job_prefix = f"/job/{self.job}/"
        with self._cond:
            if method == "GET":
                if path == "/":
                    return 200, "<html>Jenkins double</html>", {}
                if path == "/api/json":
                    jobs = [{"name": self.job, "url": self._job_url(), "color": "blue"}]
                    return 200, {"_class": "hudson.model.Hudson", "jobs": jobs}, {}
                if path == "/me/api/json":
                    return 200, {"id": self.username, "fullName": self.username}, {}
                if path == "/queue/api/json":
                    items = [
                        self._queue_item_json(i)
                        for i in self._queue.values()
                        if i.build is None and not i.cancelled
                    ]
                    return 200, {"_class": "hudson.model.Queue", "items": items}, {}
                if match := re.fullmatch(r"/queue/item/(\d+)/api/json", path):
                    item = self._queue.get(int(match[1]))
                    return (200, self._queue_item_json(item), {}) if item else _NOT_FOUND
                if path == f"{job_prefix}api/json":
                    return 200, self._job_json(), {}
                if match := re.fullmatch(rf"{re.escape(job_prefix)}(\d+)/api/json", path):
                    build = self._builds.get(int(match[1]))
                    return (200, self._build_json(build), {}) if build else _NOT_FOUND
                if match := re.fullmatch(rf"{re.escape(job_prefix)}(\d+)/consoleText", path):
                    number = int(match[1])
                    if number not in self._builds:
                        return _NOT_FOUND
                    return 200, self.console_text(number), {}
                return _NOT_FOUND
        # POSTs (outside the lock: they take it themselves)
        if path == f"{job_prefix}buildWithParameters":
            raise AssertionError("handled by the request handler")
        if match := re.fullmatch(rf"{re.escape(job_prefix)}(\d+)/stop", path):
            return (200, "", {}) if self._stop_build(int(match[1])) else _NOT_FOUND
        if path == "/queue/cancelItem":
            ids = query.get("id") or []
            if not ids or not ids[0].isdigit():
                return 400, "id required", {}
            self._cancel_item(int(ids[0]))
            # Jenkins answers with a redirect to the Referer ("forwardToPreviousPage").
            return 302, "", {"Location": self.url}
        return _NOT_FOUND


_NOT_FOUND: tuple[int, str, dict[str, str]] = (404, "Not Found", {})


def _handler_for(double: JenkinsDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            for prefix, status in double.fail_paths.items():
                if path.startswith(prefix):
                    return self._send(status, f"Jenkins double: {status}")
            auth = self._authenticated()
            if auth is None:
                return self._send(403, "Authentication required")
            if not auth:
                return self._send(401, "Invalid password/token for user")
            if method == "GET" and path == "/crumbIssuer/api/json":
                new_session, new_crumb = double._issue_crumb()
                crumb_json = {
                    "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                    "crumb": new_crumb,
                    "crumbRequestField": CRUMB_FIELD,
                }
                cookie = f"{SESSION_COOKIE}={new_session}; Path=/; HttpOnly"
                return self._send(200, crumb_json, {"Set-Cookie": cookie})
            if method == "POST":
                cookies = SimpleCookie(self.headers.get("Cookie") or "")
                session = cookies[SESSION_COOKIE].value if SESSION_COOKIE in cookies else None
                crumb = self.headers.get(CRUMB_FIELD)
                if not double._crumb_ok(session, crumb):
                    with double._cond:
                        double.rejected_posts.append(path)
                    return self._send(403, "No valid crumb was included in the request")
                if path == f"/job/{double.job}/buildWithParameters":
                    content_type = self.headers.get("Content-Type")
                    form: dict[str, list[str]] = {}
                    if (content_type or "").startswith("application/x-www-form-urlencoded"):
                        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
                    received = BuildRequest(query, form, content_type, crumb)
                    try:
                        parameters = double._parameters(received)
                    except ValueError as exc:
                        return self._send(500, str(exc))
                    queue_id = double._enqueue(received, parameters)
                    location = f"{double.url}queue/item/{queue_id}/"
                    return self._send(201, "", {"Location": location})
            status, payload, headers = double._route(method, path, query)
            self._send(status, payload, headers)

        def _authenticated(self) -> bool | None:
            header = self.headers.get("Authorization") or ""
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return secrets.compare_digest(
                f"{user}:{password}".encode(), f"{double.username}:{double.password}".encode()
            )

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            if isinstance(payload, str):
                data = payload.encode()
                content_type = "text/plain;charset=utf-8"
            else:
                data = json.dumps(payload).encode()
                content_type = "application/json;charset=utf-8"
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("X-Jenkins", JENKINS_VERSION)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _kill_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_tree(cookie: str, signum: int) -> list[int]:
    """Signal every live process whose environment carries the build's cookie; their pids."""
    mark = f"JENKINS_NODE_COOKIE={cookie}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark not in environ.read_bytes().split(b"\0"):
                continue
            state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            continue
        pid = int(environ.parent.name)
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            continue
        found.append(pid)
    return found


def _log(build: Build, line: str) -> None:
    with open(build.console, "a", encoding="utf-8") as console:
        console.write(line + "\n")


def running_double(work_dir: Path, **options: Any) -> Generator[JenkinsDouble, None, None]:
    """For a fixture: `yield from running_double(tmp_path, agent_env={...})`."""
    double = JenkinsDouble(work_dir, **options).start()
    try:
        yield double
    finally:
        double.stop()
