"""The Jenkins pipeline runner: starts and follows the provisio-deploy job with python-jenkins.

The job (jenkins_job/Jenkinsfile, created by jenkins_job/casc.yaml) takes six parameters and
nothing else: DEPLOYMENT_ID, ACTION (deploy or destroy: the playbook it runs), RUN (the
deployment's run number: 1, 2, ...), CALLBACK_URL, CALLBACK_TOKEN (a non-stored password
parameter) and VARS_JSON, all of the deployment's variables as one JSON object. The build runs
jenkins_job/run_deployment.py, which turns VARS_JSON into a vars file of !unsafe strings; which
disk backend it uses is Jenkins' own configuration (its PROVISIO_* environment), not ours.
`find_run` knows a run by its DEPLOYMENT_ID and RUN (a build from before RUN existed is run 1).

Job ids, as stored in `deployments.jenkins_job_id` (always of the job `settings.jenkins_job`):

    queue:<queue item id>   what `trigger` returns: Jenkins accepted the build into its queue
    build:<build number>    what `find_run` returns once the queue item has become a build

`status`, `cancel` accept both forms at any time. A queue item that became a build is followed to
that build: through the item's `executable` while Jenkins remembers the item, afterwards (Jenkins
forgets an item about five minutes after it left the queue, and at a restart) through the recent
builds' `queueId`. What was learnt is kept in memory, so that search runs at most once per item
and worker process.

`cancel` cancels a queue item that still waits (`cancel_queue`) or stops its build
(`stop_build`), then polls until Jenkins reports the item cancelled or the build ended (no longer
`building`): the deployment's teardown must never run beside a build that is still going. After
it `status` is ABORTED (or the result the build had reached before the stop). The Jenkinsfile's
shell step is killed with its whole process tree when a build is stopped.

Every method is one short series of blocking HTTP requests with a timeout and no retries: retries
belong to Temporal (the activities run on the worker's thread pool). Each call uses a fresh
python-jenkins client. python-jenkins caches the CSRF crumb of its first request forever, and
Jenkins binds a crumb to the web session it was issued in: a client shared by the pool's threads
could end up pairing one thread's crumb with another's session cookie, or keep a crumb whose
session Jenkins has since expired, and every later POST would be refused with 403 until the
worker restarts. A fresh client costs one crumb request per call.

Parameters travel in the POST body (like a form), not in the query string that
`Jenkins.build_job` builds: URLs end up in access logs and proxy logs (the callback token must
not), and a large VARS_JSON would exceed Jenkins' URL length limit.

A 404 is "Jenkins no longer knows this": MISSING for a build. python-jenkins reports a missing
build or queue item as a plain JenkinsException, the same as a 502 from a proxy, so the answer's
status is read from the exception it was raised from; anything but a 404 propagates and the
activity is retried.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

import requests
from jenkins import Jenkins, JenkinsException, NotFoundException

from pipeline.ansible_vars import check_variables
from pipeline.runner import PipelineRequest
from vocabulary.runs import RunAction, RunRef, RunState, RunStatus

if TYPE_CHECKING:
    from settings import Settings

QUEUE_PREFIX = "queue:"
BUILD_PREFIX = "build:"
DEPLOYMENT_ID_PARAMETER = "DEPLOYMENT_ID"
ACTION_PARAMETER = "ACTION"
RUN_PARAMETER = "RUN"
# Builds of the job looked at when searching by deployment or queue item: what Jenkins lists by
# default (`get_job_info(..., fetch_all_builds=False)`), newest first.
DEFAULT_MAX_BUILDS_SCANNED = 100
DEFAULT_TIMEOUT_S = 30.0
# How long `cancel` waits for Jenkins to confirm that the build ended, and how often it asks.
DEFAULT_CANCEL_TIMEOUT_S = 120.0
CANCEL_POLL_INTERVAL_S = 0.5


class JenkinsRunnerError(RuntimeError):
    """Jenkins answered in a way the runner cannot use, or did not end a build in time."""


class JenkinsRunner:
    host_bound: ClassVar[bool] = False

    def __init__(
        self,
        settings: Settings,
        server: Jenkins | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_builds_scanned: int = DEFAULT_MAX_BUILDS_SCANNED,
        cancel_timeout_s: float = DEFAULT_CANCEL_TIMEOUT_S,
        cancel_poll_interval_s: float = CANCEL_POLL_INTERVAL_S,
    ) -> None:
        """`server`: a python-jenkins client to use for every call instead of a fresh one each
        time (see the module docstring for why fresh is the default). `cancel_timeout_s`: how long
        `cancel` waits for Jenkins to confirm that the run ended."""
        if bool(settings.jenkins_user) != bool(settings.jenkins_token):
            raise ValueError(
                "set both PROVISIO_JENKINS_USER and PROVISIO_JENKINS_TOKEN, or neither"
            )
        self.url = settings.jenkins_url
        self.job = settings.jenkins_job
        self._username = settings.jenkins_user or None
        self._password = settings.jenkins_token or None
        self._server = server
        self.timeout_s = timeout_s
        self.max_builds_scanned = max_builds_scanned
        self.cancel_timeout_s = cancel_timeout_s
        self.cancel_poll_interval_s = cancel_poll_interval_s
        self._lock = threading.Lock()
        self._build_of_queue_item: dict[int, int] = {}

    # -- PipelineRunner -------------------------------------------------------------------------

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        wanted = (str(int(deployment_id)), str(int(run)))
        server = self._client()
        # The queue first: a build's parameters are in its queue item until it starts.
        for item in server.get_queue_info():
            if self._is_our_job(item.get("task")) and _run_of(item) == wanted:
                return self._queue_ref(server, int(item["id"]))
        for info in self._recent_builds(server):
            if _run_of(info) == wanted:
                return _build_ref(info)
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        # The activity has checked them; checking here too refuses them before a build takes an
        # executor only for run_deployment.py to refuse them.
        check_variables(request.variables)
        if int(request.run) < 1:
            raise ValueError(
                f"run {request.run} of deployment {request.deployment_id}: runs count from 1"
            )
        parameters = {
            DEPLOYMENT_ID_PARAMETER: str(int(request.deployment_id)),
            ACTION_PARAMETER: RunAction(request.action).value,
            RUN_PARAMETER: str(int(request.run)),
            "CALLBACK_URL": request.callback_url,
            "CALLBACK_TOKEN": request.callback_token,
            # The only user data, as one parameter. ASCII-only JSON (json's default), so the
            # form's character encoding cannot alter it.
            "VARS_JSON": json.dumps(request.variables, allow_nan=False),
        }
        server = self._client()
        response = server.jenkins_request(
            requests.Request("POST", self._job_url(server, "buildWithParameters"), data=parameters)
        )
        queue_id = _queue_id(response.headers.get("Location"))
        if queue_id is None:
            raise JenkinsRunnerError(
                f"Jenkins queued no build of {self.job} for deployment {request.deployment_id}: "
                f"HTTP {response.status_code} without a queue item Location"
            )
        return self._queue_ref(server, queue_id)

    def status(self, ref: RunRef) -> RunStatus:
        kind, number = _parse_job_id(ref.job_id)
        if kind is None:
            return RunStatus(RunState.MISSING, reason=f"not a Jenkins run: {ref.job_id!r}")
        server = self._client()
        if kind == BUILD_PREFIX:
            return self._build_status(server, number)
        build_number = self._cached_build(number)
        if build_number is None:
            item = self._queue_item(server, number)
            if item is None:
                build_number = self._find_build_of_queue_item(server, number)
                if build_number is None:
                    return RunStatus(
                        RunState.MISSING,
                        reason=f"Jenkins knows no queue item {number}, and none of the recent "
                        f"builds of {self.job} came from it",
                    )
            elif item.get("cancelled"):
                return RunStatus(RunState.ABORTED, reason=f"queue item {number} was cancelled")
            else:
                build_number = self._executable_number(number, item)
                if build_number is None:
                    return RunStatus(RunState.QUEUED, reason=item.get("why") or "starting")
        return self._build_status(server, build_number)

    def cancel(self, ref: RunRef) -> None:
        """Cancel the queue item or stop the build, and return once Jenkins reports that it
        ended: the item cancelled, the build no longer `building` (or gone). Harmless for a run
        that ended already. Raises JenkinsRunnerError if the build is still building after
        `cancel_timeout_s`; calling again stops it again and goes on waiting."""
        kind, number = _parse_job_id(ref.job_id)
        if kind is None:
            return
        deadline = time.monotonic() + self.cancel_timeout_s
        server = self._client()
        build_number: int | None = number
        if kind == QUEUE_PREFIX:
            build_number = self._cached_build(number)
            if build_number is None:
                build_number = self._cancel_queue_item(server, number, deadline)
        if build_number is None:
            return
        if not self._build_building(server, build_number):
            return  # ended (or gone) already: nothing to stop
        try:
            server.stop_build(self.job, build_number)
        except JenkinsException as exc:
            if not _is_not_found(exc):
                raise
            return  # the build is gone already: nothing left to stop
        while self._build_building(server, build_number):
            if time.monotonic() >= deadline:
                raise JenkinsRunnerError(
                    f"build #{build_number} of {self.job} is still running "
                    f"{self.cancel_timeout_s:g}s after it was asked to stop"
                )
            time.sleep(self.cancel_poll_interval_s)

    # -- helpers --------------------------------------------------------------------------------

    def _client(self) -> Jenkins:
        if self._server is not None:
            return self._server
        return Jenkins(
            self.url,
            username=self._username,
            password=self._password,
            timeout=self.timeout_s,
            retries=0,
        )

    def _job_path(self) -> str:
        # "folder/name" is the job "name" in the folder "folder", as python-jenkins spells it.
        return "".join(f"job/{quote(part, safe='')}/" for part in self.job.split("/"))

    def _job_url(self, server: Jenkins, tail: str = "") -> str:
        return f"{server.server}{self._job_path()}{tail}"

    def _is_our_job(self, task: Any) -> bool:
        if not isinstance(task, dict):
            return False
        url = task.get("url")
        if isinstance(url, str):
            return urlsplit(url).path.endswith("/" + self._job_path())
        return task.get("name") == self.job.rsplit("/", 1)[-1]

    def _queue_ref(self, server: Jenkins, queue_id: int) -> RunRef:
        # A queue item has no page of its own: the job's page shows it, then its build.
        return RunRef(job_id=f"{QUEUE_PREFIX}{queue_id}", url=self._job_url(server))

    def _queue_item(self, server: Jenkins, queue_id: int) -> dict[str, Any] | None:
        """The queue item, None when Jenkins does not know (or no longer remembers) it."""
        try:
            item = server.get_queue_item(queue_id)
        except JenkinsException as exc:
            if _is_not_found(exc):
                return None
            raise
        return item if isinstance(item, dict) else None

    def _cancel_queue_item(self, server: Jenkins, queue_id: int, deadline: float) -> int | None:
        """Cancel the item if it still waits, and wait until Jenkins reports it cancelled; the
        number of the build it became instead, if it did (that build must be stopped)."""
        item = self._queue_item(server, queue_id)
        if item is None:
            return self._find_build_of_queue_item(server, queue_id)
        if item.get("cancelled"):
            return None
        build_number = self._executable_number(queue_id, item)
        if build_number is not None:
            return build_number
        server.cancel_queue(queue_id)
        while True:
            # It may have left the queue between the two requests: then its build must stop.
            item = self._queue_item(server, queue_id)
            if item is None:
                return self._find_build_of_queue_item(server, queue_id)
            if item.get("cancelled"):
                return None
            build_number = self._executable_number(queue_id, item)
            if build_number is not None:
                return build_number
            if time.monotonic() >= deadline:
                raise JenkinsRunnerError(
                    f"queue item {queue_id} of {self.job} still waits "
                    f"{self.cancel_timeout_s:g}s after it was cancelled"
                )
            time.sleep(self.cancel_poll_interval_s)

    def _build_building(self, server: Jenkins, number: int) -> bool:
        """Whether the build is still going (post steps included); False once it is gone."""
        try:
            info = server.get_build_info(self.job, number)
        except JenkinsException as exc:
            if _is_not_found(exc):
                return False
            raise
        return bool(info.get("building")) or info.get("result") is None

    def _executable_number(self, queue_id: int, item: dict[str, Any]) -> int | None:
        executable = item.get("executable")
        if not isinstance(executable, dict) or executable.get("number") is None:
            return None
        number = int(executable["number"])
        with self._lock:
            self._build_of_queue_item[queue_id] = number
        return number

    def _cached_build(self, queue_id: int) -> int | None:
        with self._lock:
            return self._build_of_queue_item.get(queue_id)

    def _recent_builds(self, server: Jenkins) -> Iterator[dict[str, Any]]:
        """Infos of the job's recent builds, newest first; lazily, so a search stops early."""
        job = server.get_job_info(self.job, fetch_all_builds=False)
        for build in (job.get("builds") or [])[: self.max_builds_scanned]:
            try:
                info = server.get_build_info(self.job, int(build["number"]))
            except JenkinsException as exc:
                if _is_not_found(exc):
                    continue  # deleted (log rotation) since the job was listed
                raise
            if isinstance(info, dict):
                if info.get("queueId") is not None and info.get("number") is not None:
                    with self._lock:
                        self._build_of_queue_item[int(info["queueId"])] = int(info["number"])
                yield info

    def _find_build_of_queue_item(self, server: Jenkins, queue_id: int) -> int | None:
        for info in self._recent_builds(server):
            if info.get("queueId") == queue_id:
                return int(info["number"])
        return None

    def _build_status(self, server: Jenkins, number: int) -> RunStatus:
        try:
            info = server.get_build_info(self.job, number)
        except JenkinsException as exc:
            if _is_not_found(exc):
                return RunStatus(
                    RunState.MISSING, reason=f"build #{number} of {self.job} does not exist"
                )
            raise
        # Tell the workflow the build behind a queue ref, so the deployment records it.
        ref = RunRef(job_id=f"{BUILD_PREFIX}{number}", url=info.get("url"))
        # Still building even when a result is set: post steps (cleanup) are running.
        if info.get("building"):
            return RunStatus(RunState.RUNNING, ref=ref)
        result = info.get("result")
        if result is None:
            return RunStatus(RunState.RUNNING, ref=ref)  # finishing: the result is not recorded yet
        if result == "SUCCESS":
            return RunStatus(RunState.SUCCEEDED, ref=ref)
        if result == "ABORTED":
            return RunStatus(RunState.ABORTED, reason=f"build #{number} ABORTED", ref=ref)
        # FAILURE, UNSTABLE, NOT_BUILT: the console says why.
        reason = f"build #{number} {result}"
        if info.get("url"):
            reason += f" (console: {info['url']}console)"
        return RunStatus(RunState.FAILED, reason=reason, ref=ref)


def _build_ref(info: dict[str, Any]) -> RunRef:
    return RunRef(job_id=f"{BUILD_PREFIX}{int(info['number'])}", url=info.get("url"))


def _parse_job_id(job_id: str) -> tuple[str | None, int]:
    for prefix in (QUEUE_PREFIX, BUILD_PREFIX):
        if job_id.startswith(prefix):
            digits = job_id[len(prefix) :]
            if digits.isascii() and digits.isdigit():
                return prefix, int(digits)
    return None, 0


def _queue_id(location: str | None) -> int | None:
    """The item id of a queue item URL, ".../queue/item/25/"."""
    if not location:
        return None
    parts = urlsplit(location).path.rstrip("/").split("/")
    if len(parts) < 3 or parts[-3:-1] != ["queue", "item"] or not parts[-1].isdigit():
        return None
    return int(parts[-1])


def _run_of(info: dict[str, Any]) -> tuple[str | None, str]:
    """(DEPLOYMENT_ID, RUN) of a queue item or build; a build from before the job had RUN is the
    deployment's first run."""
    actions = info.get("actions")
    return (
        _parameter(actions, DEPLOYMENT_ID_PARAMETER),
        _parameter(actions, RUN_PARAMETER) or "1",
    )


def _parameter(actions: Any, name: str) -> str | None:
    """The value of build parameter `name` in a queue item's or build's `actions`."""
    for action in actions or []:
        if not isinstance(action, dict):
            continue
        for parameter in action.get("parameters") or []:
            if isinstance(parameter, dict) and parameter.get("name") == name:
                value = parameter.get("value")
                return None if value is None else str(value)
    return None


def _is_not_found(exc: BaseException) -> bool:
    """Whether Jenkins answered 404: python-jenkins raises NotFoundException, or a plain
    JenkinsException from within the handler of one (or of a requests HTTPError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NotFoundException):
            return True
        response = getattr(current, "response", None)
        if getattr(response, "status_code", None) == 404:
            return True
        current = current.__cause__ or current.__context__
    return False
