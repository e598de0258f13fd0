"""The local pipeline runner: playbooks/<action>.yml run by ansible-runner on the worker's host.

Why a detached `ansible-runner run` process and not `ansible_runner.run_async`: run_async runs the
playbook from a thread of the worker process, on a pty the worker owns. When the worker restarts
(a deploy, a crash, the OOM killer) the playbook dies with it, half done, and nothing on disk says
so. Here the worker starts `python -m ansible_runner run` in a session of its own (no terminal, no
signals from the worker's process group) and records its pid; when the worker goes away the run
carries on, re-parented to init. Everything needed to follow a run is on disk: the worker that
comes back finds the run directory (`find_run`), checks the pid, reads ansible-runner's status/rc
artifacts (`status`), and can stop the run (`cancel`). The price is polling files instead of
awaiting a future, which is what the workflow's status polling does anyway.

Not `ansible-runner start` (its own daemon mode): python-daemon sets umask 0, and the playbook's
modules would then create world-writable files and directories (mount points, fstab).

A run survives the worker, not the worker's container or cgroup: under systemd use
KillMode=process (or run the worker where a restart does not kill its whole cgroup).

Each run of a deployment (its first deploy, then each retry, cancel teardown or destroy: numbered
1, 2, ... by the workflow) has its own private data directory, `<runner_dir>/<deployment id>/<run>/`
(mode 0700, like `<runner_dir>/<deployment id>/`), and the job id `local-<deployment id>-<run>`:

    run.json        deployment, run, action, workflow, when it was triggered (existence = triggered)
    vars.yml        the vars file (mode 0600): user data all !unsafe, see pipeline/ansible_vars.py
    pid             the ansible-runner process (so `ansible-runner is-alive/stop DIR` work too)
    runner.log      ansible-runner's own output
    artifacts/<action>/{status,rc,stdout,job_events/}   ansible-runner's record of the run
    cancel-requested  written by `cancel`
    lock            serialises starting the run with cancelling it

The action picks the playbook: `deploy` runs playbooks/deploy.yml, `destroy` playbooks/destroy.yml,
`plan` playbooks/deploy.yml in check mode with diff (it changes nothing).

The directory is prepared under a temporary name and renamed into place, so a run directory is
never half written and two triggers cannot both start a run. The run gets a minimal environment
(no worker secrets such as the database URL) plus the callback URL and token, which ansible-runner
also records in artifacts/<action>/command (mode 0600, in the 0700 directory).

Cancel leaves nothing running. Every process of a run carries PROVISIO_RUN_DIR=<its data directory>
in its environment, and ansible-runner and ansible-playbook (which pexpect starts on a pty of its
own) each lead a session; a process belongs to the run if it carries the mark or lives in one of
those sessions, so a task's command is found even after it changed its process group, cleared its
environment or lost its parent. `cancel` sends SIGTERM to ansible-runner (it records "canceled")
and to every process group of the run, SIGKILL to every process of the run still there after a
grace period, and returns only when none is left (or raises when some outlive the bound, and the
activity tries again).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.ansible_vars import write_vars_file
from pipeline.runner import PipelineRequest
from vocabulary.runs import RunAction, RunRef, RunState, RunStatus

if TYPE_CHECKING:
    from settings import Settings

PLAYBOOKS_DIR = Path(__file__).resolve().parent.parent / "playbooks"
# The playbook of each action; ansible-runner's artifact directory is named after the action.
PLAYBOOKS = {
    RunAction.DEPLOY: "deploy.yml",
    RunAction.DESTROY: "destroy.yml",
    RunAction.PLAN: "deploy.yml",
}
# A plan changes nothing: check mode, with each change's diff in its events.
CHECK_MODE = {RunAction.PLAN: " --check --diff"}
JOB_PREFIX = "local-"
RUN_FILE = "run.json"
VARS_FILE = "vars.yml"
PID_FILE = "pid"
LOCK_FILE = "lock"
CANCEL_FILE = "cancel-requested"
# The mark every process of a run inherits (see the module docstring).
RUN_MARK = "PROVISIO_RUN_DIR"
# Variables of the worker's environment the playbook may see. Everything else (database URL,
# secret key, ...) stays out of the run.
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_HOST_STATS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failures",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


class LocalRunnerError(RuntimeError):
    """The run could not be started, or could not be stopped within the bound."""


class LocalRunner:
    host_bound: ClassVar[bool] = True  # its processes and data live on this host

    def __init__(
        self,
        settings: Settings,
        *,
        playbooks_dir: Path | None = None,
        directory_mount: bool | None = None,
        lvm_pvs: Sequence[str] | None = None,
        start_grace_s: float = 60.0,
        cancel_grace_s: float = 5.0,
        cancel_timeout_s: float = 15.0,
    ) -> None:
        """`cancel_grace_s`: how long a cancelled run has to end on SIGTERM before every process
        left is killed; `cancel_timeout_s`: how long `cancel` waits in all before it gives up."""
        self.runner_dir = Path(settings.runner_dir).resolve()
        self.disk_backend = settings.disk_backend
        self.sandbox_root = Path(settings.sandbox_root).resolve()
        self.playbooks_dir = (playbooks_dir or PLAYBOOKS_DIR).resolve()
        self.directory_mount = (
            settings.directory_mount if directory_mount is None else directory_mount
        )
        self.lvm_pvs = list(settings.lvm_pvs if lvm_pvs is None else lvm_pvs)
        self.start_grace_s = start_grace_s
        self.cancel_grace_s = cancel_grace_s
        self.cancel_timeout_s = max(cancel_timeout_s, cancel_grace_s)

    # -- PipelineRunner -------------------------------------------------------------------------

    def find_run(self, deployment_id: int, run: int) -> RunRef | None:
        if (self.data_dir(deployment_id, run) / RUN_FILE).is_file():
            return _ref(deployment_id, run)
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        deployment_id, run = int(request.deployment_id), int(request.run)
        if deployment_id < 1 or run < 1:
            raise ValueError(f"no run {run} of deployment {deployment_id}: both count from 1")
        action = RunAction(request.action)
        playbook = PLAYBOOKS[action]
        data_dir = self.data_dir(deployment_id, run)
        if (data_dir / RUN_FILE).is_file():
            return _ref(deployment_id, run)  # started already: `trigger` is safe to repeat
        data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Prepare everything under a temporary name; UnsafeVariablesError surfaces from here,
        # before anything that looks like a run exists.
        staging = Path(tempfile.mkdtemp(prefix=f".{run}.", dir=data_dir.parent))
        try:
            write_vars_file(staging / VARS_FILE, request.variables, self._runner_vars())
            (staging / "tmp").mkdir(mode=0o700)
            (staging / RUN_FILE).write_text(
                json.dumps(
                    {
                        "deployment_id": deployment_id,
                        "run": run,
                        "action": action.value,
                        "workflow_id": request.workflow_id,
                        "triggered_at": time.time(),
                        "playbook": str(self.playbooks_dir / playbook),
                    }
                )
            )
            os.chmod(staging, 0o700)
            try:
                staging.rename(data_dir)
            except OSError:
                if not (data_dir / RUN_FILE).is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
                return _ref(deployment_id, run)  # another trigger won the race
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

        command = [
            sys.executable,
            "-m",
            "ansible_runner",
            "run",
            str(data_dir),
            "--project-dir",
            str(self.playbooks_dir),
            "-p",
            playbook,
            "--inventory",
            str(self.playbooks_dir / "inventory" / "localhost.yml"),
            "--ident",
            action.value,
            # "=" form: argparse would take a separate "-e ..." for an option.
            f"--cmdline=-e @{shlex.quote(str(data_dir / VARS_FILE))}{CHECK_MODE.get(action, '')}",
        ]
        with _locked(data_dir):
            if (data_dir / CANCEL_FILE).exists():
                # Cancelled before it started: it never will (status: ABORTED).
                return _ref(deployment_id, run)
            try:
                with open(data_dir / "runner.log", "ab") as log:
                    process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self._environment(request, data_dir),
                        cwd=data_dir,
                        start_new_session=True,  # outlives the worker; not hit by its signals
                        umask=0o022,
                    )
            except OSError as exc:
                # Nothing started: move the directory aside so a retried trigger starts afresh.
                failed = data_dir.with_name(f".{run}.failed-{time.time_ns()}")
                data_dir.rename(failed)
                raise LocalRunnerError(f"could not start ansible-runner: {exc}") from exc
            (data_dir / PID_FILE).write_text(f"{process.pid}\n")
        # Reap it when it ends, so a long-lived worker does not collect zombies.
        threading.Thread(
            target=process.wait, name=f"reap-local-{deployment_id}-{run}", daemon=True
        ).start()
        return _ref(deployment_id, run)

    def status(self, ref: RunRef) -> RunStatus:
        parsed = _parse_job_id(ref.job_id)
        if parsed is None:
            return RunStatus(RunState.MISSING, reason=f"not a local run: {ref.job_id!r}")
        data_dir = self.data_dir(*parsed)
        run_file = data_dir / RUN_FILE
        if not run_file.is_file():
            return RunStatus(RunState.MISSING, reason=f"no run directory {data_dir}")
        record = _run_record(data_dir)
        artifacts = _artifacts(data_dir, record)
        cancelled = (data_dir / CANCEL_FILE).exists()
        finished = _finished_status(artifacts, cancelled)
        if finished is not None:
            return finished
        if self._runner_pid(data_dir) is not None:
            return RunStatus(RunState.RUNNING)
        # It may have written its result and exited between the two looks.
        finished = _finished_status(artifacts, cancelled)
        if finished is not None:
            return finished
        if cancelled:
            return RunStatus(RunState.ABORTED, reason="canceled")
        try:
            triggered_at = float(record["triggered_at"])
        except (KeyError, TypeError, ValueError):
            triggered_at = run_file.stat().st_mtime
        if time.time() - triggered_at < self.start_grace_s:
            return RunStatus(RunState.QUEUED, reason="starting")
        return RunStatus(
            RunState.FAILED,
            reason=f"the runner process ended without a result (see {data_dir}/runner.log)",
        )

    def cancel(self, ref: RunRef) -> None:
        """Stop the run and return when no process of it is left; harmless for a run that has
        finished (its result stays) or that this runner does not know.

        Raises LocalRunnerError if processes of the run outlive `cancel_timeout_s` (a process in
        uninterruptible sleep): calling again goes on where this call stopped."""
        parsed = _parse_job_id(ref.job_id)
        if parsed is None:
            return
        data_dir = self.data_dir(*parsed)
        if not (data_dir / RUN_FILE).is_file():
            return
        with _locked(data_dir):
            cancelled = (data_dir / CANCEL_FILE).exists()
            if not cancelled and _finished_status(_artifacts(data_dir), False) is not None:
                return  # it ended on its own: nothing to stop, and its result stands
            if not cancelled:
                (data_dir / CANCEL_FILE).write_text(f"{time.time()}\n")
        self._stop(data_dir)

    # -- helpers --------------------------------------------------------------------------------

    def data_dir(self, deployment_id: int, run: int) -> Path:
        """The private directory of a deployment's run."""
        return self.runner_dir / str(int(deployment_id)) / str(int(run))

    def run_processes(self, ref: RunRef) -> list[int]:
        """The pids of the run's live processes (for checks and tests)."""
        parsed = _parse_job_id(ref.job_id)
        if parsed is None:
            return []
        return sorted(p.pid for p in _run_processes(self.data_dir(*parsed)))

    def _stop(self, data_dir: Path) -> None:
        """SIGTERM, a grace period, then SIGKILL until no process of the run is left."""
        start = time.monotonic()
        processes = _run_processes(data_dir)
        if not processes:
            return
        # ansible-runner turns SIGTERM into a cancel: it kills the playbook's process group and
        # records "canceled". The playbook's group and every other group of the run are asked
        # too, so a run whose ansible-runner is gone, or slow to look, stops all the same.
        for group in sorted({p.pgid for p in processes}):
            _signal_group(group, signal.SIGTERM)
        for process in processes:
            _signal(process.pid, signal.SIGTERM)
        while processes and time.monotonic() - start < self.cancel_grace_s:
            time.sleep(0.1)
            processes = _run_processes(data_dir)
        # Whatever is left is killed, again and again: a process may fork while it is signalled.
        while processes:
            for group in sorted({p.pgid for p in processes}):
                _signal_group(group, signal.SIGKILL)
            for process in processes:
                _signal(process.pid, signal.SIGKILL)
            if time.monotonic() - start >= self.cancel_timeout_s:
                time.sleep(0.1)
                processes = _run_processes(data_dir)
                if processes:
                    pids = ", ".join(str(p.pid) for p in processes)
                    raise LocalRunnerError(
                        f"processes of the run in {data_dir} outlived SIGKILL for "
                        f"{self.cancel_timeout_s:g}s: {pids}"
                    )
                break
            time.sleep(0.05)
            processes = _run_processes(data_dir)

    def _runner_vars(self) -> dict[str, Any]:
        runner_vars: dict[str, Any] = {"provisio_disk_backend": self.disk_backend}
        if self.disk_backend == "directory":
            runner_vars["provisio_sandbox_root"] = str(self.sandbox_root)
            runner_vars["provisio_directory_mount"] = self.directory_mount
        else:
            runner_vars["provisio_pvs"] = list(self.lvm_pvs)
        return runner_vars

    def _environment(self, request: PipelineRequest, data_dir: Path) -> dict[str, str]:
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        # ansible-playbook and ansible-runner live next to this interpreter (a virtualenv's bin).
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", os.defpath)) if p)
        env.setdefault("LANG", "C.UTF-8")  # ansible-core refuses to run without a UTF-8 locale
        env.update(
            {
                "ANSIBLE_CONFIG": str(self.playbooks_dir / "ansible.cfg"),
                "ANSIBLE_CALLBACK_PLUGINS": str(self.playbooks_dir / "callback_plugins"),
                "ANSIBLE_CALLBACKS_ENABLED": "provisio_callback",
                "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
                "ANSIBLE_REMOTE_TEMP": str(data_dir / "tmp"),
                "ANSIBLE_NOCOLOR": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PROVISIO_CALLBACK_URL": request.callback_url,
                "PROVISIO_CALLBACK_TOKEN": request.callback_token,
                RUN_MARK: str(data_dir),
            }
        )
        return env

    @staticmethod
    def _runner_pid(data_dir: Path) -> int | None:
        """The pid of the run's ansible-runner process while it is alive."""
        try:
            pid: int | None = int((data_dir / PID_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None and _is_runner(pid, data_dir):
            return pid
        # The worker may have died between starting the process and writing its pid.
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            candidate = int(cmdline.parent.name)
            if candidate != pid and _is_runner(candidate, data_dir):
                return candidate
        return None


def _ref(deployment_id: int, run: int) -> RunRef:
    return RunRef(job_id=f"{JOB_PREFIX}{int(deployment_id)}-{int(run)}")


def _parse_job_id(job_id: str) -> tuple[int, int] | None:
    """(deployment id, run) of `local-<deployment id>-<run>`."""
    if not job_id.startswith(JOB_PREFIX):
        return None
    deployment, _, run = job_id[len(JOB_PREFIX) :].partition("-")
    if not (deployment.isascii() and deployment.isdigit() and run.isascii() and run.isdigit()):
        return None
    return int(deployment), int(run)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run (any process): starting it and cancelling it never overlap."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run_record(data_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((data_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _artifacts(data_dir: Path, record: dict[str, Any] | None = None) -> Path:
    """ansible-runner's artifact directory of the run (named after its action)."""
    action = (record if record is not None else _run_record(data_dir)).get("action")
    ident = action if action in PLAYBOOKS else RunAction.DEPLOY.value
    return data_dir / "artifacts" / ident


def _is_runner(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is alive and is ansible-runner working on `data_dir`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has an empty command line, a recycled pid another one.
    args = cmdline.split(b"\0")
    return b"ansible_runner" in args and os.fsencode(data_dir) in args


@dataclass(frozen=True)
class _Process:
    pid: int
    pgid: int
    sid: int


def _processes() -> Iterator[tuple[_Process, bytes | None]]:
    """Every live process (zombies left out) and its environment (None if unreadable)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            state, pgid, sid = fields[0], int(fields[2]), int(fields[3])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if state in ("Z", "X"):
            continue
        try:
            environ: bytes | None = (stat.parent / "environ").read_bytes()
        except OSError:
            environ = None
        yield _Process(int(stat.parent.name), pgid, sid), environ


def _run_processes(data_dir: Path) -> list[_Process]:
    """The live processes of the run in `data_dir`: those carrying its mark and those in a
    session that one of them leads (ansible-runner's, ansible-playbook's)."""
    mark = os.fsencode(f"{RUN_MARK}={data_dir}")
    me = os.getpid()
    marked: list[_Process] = []
    others: list[_Process] = []
    for process, environ in _processes():
        if process.pid == me:
            continue
        if environ is not None and mark in environ.split(b"\0"):
            marked.append(process)
        else:
            others.append(process)
    sessions = {p.sid for p in marked if p.sid == p.pid}
    return marked + [p for p in others if p.sid in sessions and p.sid != 0]


def _finished_status(artifacts: Path, cancelled: bool) -> RunStatus | None:
    """The run's result from ansible-runner's status/rc artifacts, None while it has none.

    A run that was asked to stop and did not succeed was cancelled, whatever ansible-runner wrote:
    when the playbook dies of the cancel's signals before ansible-runner notices the cancel, it
    records "failed"."""
    final = _read_text(artifacts / "status")
    if final not in ("successful", "failed", "timeout", "canceled"):
        return None
    stats = _playbook_stats(artifacts)
    if final == "successful":
        return RunStatus(RunState.SUCCEEDED, stats=stats)
    if final == "canceled" or cancelled:
        return RunStatus(RunState.ABORTED, reason="canceled", stats=stats)
    if final == "timeout":
        return RunStatus(RunState.FAILED, reason="ansible-runner timed out", stats=stats)
    rc = _read_text(artifacts / "rc")
    reason = _failure_reason(artifacts) or f"ansible-playbook exited with rc {rc}"
    return RunStatus(RunState.FAILED, reason=reason, stats=stats)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _job_events_newest_first(artifacts: Path) -> list[Path]:
    def counter(path: Path) -> int:
        head = path.name.split("-", 1)[0]
        return int(head) if head.isdigit() else -1

    return sorted((artifacts / "job_events").glob("*.json"), key=counter, reverse=True)


def _load_event(path: Path) -> dict[str, Any] | None:
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return event if isinstance(event, dict) else None


def _playbook_stats(artifacts: Path) -> dict[str, Any] | None:
    """Per-host stats of the run's playbook_on_stats event, keyed like the callback's."""
    for path in _job_events_newest_first(artifacts):
        event = _load_event(path)
        if not event or event.get("event") != "playbook_on_stats":
            continue
        data = event.get("event_data") or {}
        hosts: set[str] = set()
        for key in (*_HOST_STATS, "processed"):
            if isinstance(data.get(key), dict):
                hosts.update(data[key])
        return {
            host: {
                ours: int((data.get(theirs) or {}).get(host, 0))
                for theirs, ours in _HOST_STATS.items()
            }
            for host in sorted(hosts)
        }
    return None


def _failure_reason(artifacts: Path) -> str | None:
    """ "task X failed on host Y: msg" for the last failure that was not ignored."""
    for path in _job_events_newest_first(artifacts):
        event = _load_event(path)
        if not event or event.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = event.get("event_data") or {}
        if data.get("ignore_errors"):
            continue
        res = data.get("res")
        result: dict[str, Any] = res if isinstance(res, dict) else {}
        what = "unreachable" if event["event"] == "runner_on_unreachable" else "failed"
        task = data.get("task")
        if data.get("role"):  # named like the callback plugin's events: "role : task"
            task = f"{data['role']} : {task}"
        reason = f"task {task!r} {what} on {data.get('host')}"
        msg = result.get("msg")
        items = result.get("results")
        if isinstance(items, list):  # a loop: "One or more items failed", the reason is inside
            failed_items = [i for i in items if isinstance(i, dict) and i.get("failed")]
            if failed_items and failed_items[0].get("msg"):
                msg = f"{msg}: {failed_items[0]['msg']}" if msg else failed_items[0]["msg"]
        if msg:
            reason += f": {str(msg)[:500]}"
        return reason
    return None


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int, signum: int) -> None:
    if pgid <= 1 or pgid == os.getpgrp():
        return  # never the worker's own group, nor "every process" (0, 1)
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
