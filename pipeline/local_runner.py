"""The local pipeline runner: playbooks/deploy.yml run by ansible-runner on the worker's host.

Why a detached `ansible-runner run` process and not `ansible_runner.run_async`: run_async runs the
playbook from a thread of the worker process, on a pty the worker owns. When the worker restarts
(a deploy, a crash, the OOM killer) the playbook dies with it, half done, and nothing on disk says
so. Here the worker starts `python -m ansible_runner run` in a session of its own (no terminal, no
signals from the worker's process group) and records its pid; when the worker goes away the run
carries on, re-parented to init. Everything needed to follow a run is on disk: the worker that
comes back finds the run directory (`find_run`), checks the pid, reads ansible-runner's status/rc
artifacts (`status`), and can signal the process (`cancel`): ansible-runner turns SIGTERM into a
cancel, kills the playbook and records "canceled". The price is polling files instead of awaiting
a future, which is what the workflow's status polling does anyway.

Not `ansible-runner start` (its own daemon mode): python-daemon sets umask 0, and the playbook's
modules would then create world-writable files and directories (mount points, fstab).

A run survives the worker, not the worker's container or cgroup: under systemd use
KillMode=process (or run the worker where a restart does not kill its whole cgroup).

One private data directory per deployment, `<runner_dir>/<deployment id>/` (mode 0700):

    run.json        which deployment and workflow, when it was triggered (its existence = triggered)
    vars.yml        the vars file (mode 0600): user data all !unsafe, see pipeline/ansible_vars.py
    pid             the ansible-runner process (so `ansible-runner is-alive/stop DIR` work too)
    runner.log      ansible-runner's own output
    artifacts/deploy/{status,rc,stdout,job_events/}   ansible-runner's record of the run
    cancel-requested  written by `cancel`

The directory is prepared under a temporary name and renamed into place, so a run directory is
never half written and two triggers cannot both start a run. The run gets a minimal environment
(no worker secrets such as the database URL) plus the callback URL and token, which ansible-runner
also records in artifacts/deploy/command (mode 0600, in the 0700 directory).
"""

from __future__ import annotations

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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ansible_vars import write_vars_file
from pipeline.runner import PipelineRequest
from vocabulary.runs import RunRef, RunState, RunStatus

if TYPE_CHECKING:
    from settings import Settings

PLAYBOOKS_DIR = Path(__file__).resolve().parent.parent / "playbooks"
PLAYBOOK = "deploy.yml"
IDENT = "deploy"  # ansible-runner's artifact directory name for the (single) run
JOB_PREFIX = "local-"
RUN_FILE = "run.json"
VARS_FILE = "vars.yml"
CANCEL_FILE = "cancel-requested"
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
    """The run could not be started."""


class LocalRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        playbooks_dir: Path | None = None,
        directory_mount: bool | None = None,
        lvm_pvs: Sequence[str] | None = None,
        start_grace_s: float = 60.0,
        cancel_timeout_s: float = 15.0,
    ) -> None:
        self.runner_dir = Path(settings.runner_dir).resolve()
        self.disk_backend = settings.disk_backend
        self.sandbox_root = Path(settings.sandbox_root).resolve()
        self.playbooks_dir = (playbooks_dir or PLAYBOOKS_DIR).resolve()
        self.directory_mount = (
            settings.directory_mount if directory_mount is None else directory_mount
        )
        self.lvm_pvs = list(settings.lvm_pvs if lvm_pvs is None else lvm_pvs)
        self.start_grace_s = start_grace_s
        self.cancel_timeout_s = cancel_timeout_s

    # -- PipelineRunner -------------------------------------------------------------------------

    def find_run(self, deployment_id: int) -> RunRef | None:
        if (self._data_dir(deployment_id) / RUN_FILE).is_file():
            return self._ref(deployment_id)
        return None

    def trigger(self, request: PipelineRequest) -> RunRef:
        deployment_id = int(request.deployment_id)
        data_dir = self._data_dir(deployment_id)
        self.runner_dir.mkdir(parents=True, exist_ok=True)
        # Prepare everything under a temporary name; UnsafeVariablesError surfaces from here,
        # before anything that looks like a run exists.
        staging = Path(tempfile.mkdtemp(prefix=f".{deployment_id}.", dir=self.runner_dir))
        try:
            write_vars_file(staging / VARS_FILE, request.variables, self._runner_vars())
            (staging / "tmp").mkdir(mode=0o700)
            (staging / RUN_FILE).write_text(
                json.dumps(
                    {
                        "deployment_id": deployment_id,
                        "workflow_id": request.workflow_id,
                        "triggered_at": time.time(),
                        "playbook": str(self.playbooks_dir / PLAYBOOK),
                    }
                )
            )
            os.chmod(staging, 0o700)
            try:
                staging.rename(data_dir)
            except OSError:
                if (data_dir / RUN_FILE).is_file():
                    return self._ref(deployment_id)  # another trigger won the race
                raise
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
            PLAYBOOK,
            "--inventory",
            str(self.playbooks_dir / "inventory" / "localhost.yml"),
            "--ident",
            IDENT,
            # "=" form: argparse would take a separate "-e ..." for an option.
            f"--cmdline=-e @{shlex.quote(str(data_dir / VARS_FILE))}",
        ]
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
            # Nothing started: move the directory aside so a retried trigger can start afresh.
            failed = data_dir.with_name(f".{deployment_id}.failed-{int(time.time())}")
            data_dir.rename(failed)
            raise LocalRunnerError(f"could not start ansible-runner: {exc}") from exc
        (data_dir / "pid").write_text(f"{process.pid}\n")
        # Reap it when it ends, so a long-lived worker does not collect zombies.
        threading.Thread(
            target=process.wait, name=f"reap-local-{deployment_id}", daemon=True
        ).start()
        return self._ref(deployment_id)

    def status(self, ref: RunRef) -> RunStatus:
        deployment_id = _deployment_id(ref)
        if deployment_id is None:
            return RunStatus(RunState.MISSING, reason=f"not a local run: {ref.job_id!r}")
        data_dir = self._data_dir(deployment_id)
        run_file = data_dir / RUN_FILE
        if not run_file.is_file():
            return RunStatus(RunState.MISSING, reason=f"no run directory {data_dir}")
        artifacts = data_dir / "artifacts" / IDENT
        finished = _finished_status(artifacts)
        if finished is not None:
            return finished
        if self._runner_pid(data_dir) is not None:
            return RunStatus(RunState.RUNNING)
        # It may have written its result and exited between the two looks.
        finished = _finished_status(artifacts)
        if finished is not None:
            return finished
        if (data_dir / CANCEL_FILE).exists():
            return RunStatus(RunState.ABORTED, reason="canceled")
        try:
            triggered_at = float(json.loads(run_file.read_text())["triggered_at"])
        except (OSError, ValueError, KeyError, TypeError):
            triggered_at = run_file.stat().st_mtime
        if time.time() - triggered_at < self.start_grace_s:
            return RunStatus(RunState.QUEUED, reason="starting")
        return RunStatus(
            RunState.FAILED,
            reason=f"the runner process ended without a result (see {data_dir}/runner.log)",
        )

    def cancel(self, ref: RunRef) -> None:
        deployment_id = _deployment_id(ref)
        if deployment_id is None:
            return
        data_dir = self._data_dir(deployment_id)
        if not (data_dir / RUN_FILE).is_file():
            return
        (data_dir / CANCEL_FILE).write_text(str(time.time()))
        pid = self._runner_pid(data_dir)
        if pid is None:
            return
        # ansible-runner turns SIGTERM into a cancel: it kills the playbook's process
        # group and records status "canceled".
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_timeout_s
        while time.monotonic() < deadline:
            if self._runner_pid(data_dir) is None:
                return
            time.sleep(0.2)
        # It did not react: kill the playbook and ansible-runner outright.
        for child in _children(pid):
            _signal_group(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)

    # -- helpers --------------------------------------------------------------------------------

    def _data_dir(self, deployment_id: int) -> Path:
        return self.runner_dir / str(int(deployment_id))

    @staticmethod
    def _ref(deployment_id: int) -> RunRef:
        return RunRef(job_id=f"{JOB_PREFIX}{deployment_id}")

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
            }
        )
        return env

    @staticmethod
    def _runner_pid(data_dir: Path) -> int | None:
        """The pid of the run's ansible-runner process while it is alive."""
        try:
            pid: int | None = int((data_dir / "pid").read_text().split()[0])
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


def _is_runner(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is alive and is ansible-runner working on `data_dir`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has an empty command line, a recycled pid another one.
    args = cmdline.split(b"\0")
    return b"ansible_runner" in args and os.fsencode(data_dir) in args


def _deployment_id(ref: RunRef) -> int | None:
    if not ref.job_id.startswith(JOB_PREFIX):
        return None
    try:
        return int(ref.job_id[len(JOB_PREFIX) :])
    except ValueError:
        return None


def _finished_status(artifacts: Path) -> RunStatus | None:
    """The run's result from ansible-runner's status/rc artifacts, None while it has none."""
    final = _read_text(artifacts / "status")
    if final not in ("successful", "failed", "timeout", "canceled"):
        return None
    stats = _playbook_stats(artifacts)
    if final == "successful":
        return RunStatus(RunState.SUCCEEDED, stats=stats)
    if final == "canceled":
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


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return children


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signum)
    except (ProcessLookupError, PermissionError):
        pass
