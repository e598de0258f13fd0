"""Lifecycle latency with real playbooks: a cancel until no process of the run is left, and a
destroy until `destroyed`, each beside bare ansible-playbook doing the same.

The bench's own stack runs a fake runner, so this scenario starts a small stack of its own with
the product's local runner (`bench.chaos_stack`: real ansible-runner and ansible-playbook runs of
playbooks/deploy.yml and destroy.yml, image files in a sandbox of its own).

K samples of each, interleaved (a destroy, its baseline, a cancel, its baseline, then the next)
so that a machine whose load drifts weighs on a figure and on its baseline alike:

- destroy: a succeeded deployment, POST …/destroy, until its row says `destroyed` (read every
  20 ms, as `bench.settled` reads it). Split from the teardown run's own record as well: POST →
  run triggered (`run.json`), the play (ansible-runner's `playbook_on_start` →
  `playbook_on_stats` events), the end of the play → `destroyed`, and the whole run (until
  ansible-runner wrote its `status`).
- bare teardown: `ansible-playbook playbooks/destroy.yml`, run directly with the inventory and
  the vars file the local runner wrote for the product's deploy of the same template (only the
  sandbox root differs), on a deployment built by a direct `ansible-playbook
  playbooks/deploy.yml`: built once, then copied (sparse) for each sample, since destroy.yml
  removes what it tears down.
- cancel: a deployment launched and cancelled as soon as its row says `running` (its playbook
  has started; the product has no way to make a play wait, and none is added for the bench),
  POST …/cancel, until no process of its run is left (found as the local runner finds them,
  `LocalRunner.run_processes`: the run's mark in their environment and the sessions they lead)
  and until its row says `cancelled` (which includes the teardown run). Split as well: POST →
  the worker's cancel reached the run (the runner's `cancel-requested` file holds the time).
- bare kill: a bare `ansible-playbook playbooks/deploy.yml` started in a session of its own,
  once it forked its first task worker: SIGTERM to its process group, until the group is gone
  and until no process of the run is left. Its task workers start sessions of their own, so
  the bare run carries a run mark too and is searched for like a local run.

Nothing is left behind: every deployment ends `destroyed` or `cancelled`; the end counts what
is left (`bench.chaos_checks.check`: run processes, image files, deployments not final) into
the figures; then the stack stops and its directory goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from bench.chaos_checks import check
from bench.chaos_stack import OPERATOR, ChaosStack
from bench.stats import percentile, ratio
from pipeline.local_runner import (
    CANCEL_FILE,
    JOB_PREFIX,
    PLAYBOOKS_DIR,
    RUN_FILE,
    RUN_MARK,
    VARS_FILE,
    LocalRunner,
)
from settings import Settings
from vocabulary.runs import RunRef
from vocabulary.statuses import DeploymentStatus as S

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.context import BenchContext

DEFAULT_SAMPLES = 10
SMOKE_SAMPLES = 2
# One disk: the cheapest sample template (each Ansible module run costs ~0.4 s of CPU here).
TEMPLATE = "web-app"
POLL_S = 0.02  # status reads and process scans
WAIT_S = 900.0  # the bound of any one wait: the machine may be very busy
KILL_AFTER_S = 30.0  # a bare run still there this long after its SIGTERM is killed
STATUS_SQL = "SELECT status FROM deployments WHERE id = $1"
JOB_SQL = "SELECT jenkins_job_id FROM deployments WHERE id = $1"
SETTLED = {S.SUCCEEDED, S.FAILED, S.TIMED_OUT}
INVENTORY = PLAYBOOKS_DIR / "inventory" / "localhost.yml"
BIN_DIR = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[lifecycle {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def is_smoke(config: Any) -> bool:
    # BenchConfig.smoke is the classmethod that builds the smoke sizes, not a flag: a bool
    # `smoke` is read, anything else is inferred as bench/cli.py does.
    flag = getattr(config, "smoke", None)
    if isinstance(flag, bool):
        return flag
    return int(getattr(config, "orchestration_n", 200)) < 50


def sample_count(config: Any) -> int:
    """`lifecycle_samples` when the config has it (else 10), at most 2 in a smoke run."""
    samples = int(getattr(config, "lifecycle_samples", DEFAULT_SAMPLES))
    return max(1, min(samples, SMOKE_SAMPLES) if is_smoke(config) else samples)


async def run(ctx: BenchContext) -> dict[str, Any]:
    return await measure(sample_count(ctx.config), keep=bool(getattr(ctx.config, "keep", False)))


async def measure(samples: int, *, template: str = TEMPLATE, keep: bool = False) -> dict[str, Any]:
    """Start the stack, take `samples` of each figure, count what is left, stop it all. With
    `keep` (the bench's --keep) the stack's directory stays: its logs and run directories."""
    started = time.perf_counter()
    stack = ChaosStack(keep=keep, root=Path(tempfile.mkdtemp(prefix="provisio-lifecycle-")))
    figures: dict[str, Any] = {}
    try:
        await asyncio.to_thread(stack.start)
        figures["lifecycle_stack_start_s"] = time.perf_counter() - started
        log(f"stack up in {figures['lifecycle_stack_start_s']:.0f}s: {stack.root}")
        async with Lifecycle(stack, template) as lab:
            figures.update(await lab.measure(samples))
    finally:
        await asyncio.to_thread(_stop_every_run, stack)
        await asyncio.to_thread(stack.stop)
    figures["lifecycle_stack_dir_left"] = int(stack.root.exists())
    figures["lifecycle_wall_s"] = time.perf_counter() - started
    return figures


@dataclass
class Timings:
    """Seconds per sample."""

    cancel_no_process: list[float] = field(default_factory=list)
    cancel_status: list[float] = field(default_factory=list)
    cancel_answer: list[float] = field(default_factory=list)
    cancel_to_runner: list[float] = field(default_factory=list)
    bare_kill: list[float] = field(default_factory=list)
    bare_kill_group: list[float] = field(default_factory=list)
    destroy: list[float] = field(default_factory=list)
    destroy_to_trigger: list[float] = field(default_factory=list)
    destroy_play: list[float] = field(default_factory=list)
    destroy_after_play: list[float] = field(default_factory=list)
    destroy_run: list[float] = field(default_factory=list)
    bare_teardown: list[float] = field(default_factory=list)
    cancel_missed: int = 0  # settled before the cancel reached it: destroyed, another taken
    cancel_none_running: int = 0  # no process of the run found as the cancel was sent
    bare_kill_sigkilled: int = 0  # bare runs still there KILL_AFTER_S after SIGTERM

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, values in vars(self).items():
            if isinstance(values, list):
                for q in (50, 99):
                    out[f"lifecycle_{name}_p{q}_ms"] = 1000 * percentile(values, q)
        out["lifecycle_destroy_ratio"] = ratio(
            out["lifecycle_destroy_p99_ms"], out["lifecycle_bare_teardown_p99_ms"]
        )
        out["lifecycle_cancel_ratio"] = ratio(
            out["lifecycle_cancel_no_process_p99_ms"], out["lifecycle_bare_kill_p99_ms"]
        )
        out["lifecycle_cancel_missed"] = self.cancel_missed
        out["lifecycle_cancel_none_running"] = self.cancel_none_running
        out["lifecycle_bare_kill_sigkilled"] = self.bare_kill_sigkilled
        return out


class BarePlaybooks:
    """ansible-playbook run directly, as the local runner would run it (same playbooks,
    inventory, vars file and ansible.cfg) minus ansible-runner and the callback: the baselines.
    Everything lives in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # A bare run carries a run mark like a local run's, and is searched for the same way.
        self.runner = LocalRunner(Settings(runner_dir=directory / "runs"))
        self.live: list[tuple[subprocess.Popen[bytes], RunRef]] = []
        self._runs = 0

    def environment(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in ("PATH", "HOME", "TZ") if name in os.environ}
        env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", os.defpath)])
        tmp = self.directory / "ansible-tmp"
        env.update(
            LANG="C.UTF-8",
            ANSIBLE_CONFIG=str(PLAYBOOKS_DIR / "ansible.cfg"),
            ANSIBLE_LOCAL_TEMP=str(tmp),
            ANSIBLE_REMOTE_TEMP=str(tmp),
            ANSIBLE_NOCOLOR="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def command(self, playbook: str, vars_file: Path, sandbox_root: Path) -> list[str]:
        # The product's vars file; only the sandbox root differs (of extra vars the last wins).
        return [
            str(BIN_DIR / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            playbook,
            "-e",
            f"@{vars_file}",
            "-e",
            f"provisio_sandbox_root={sandbox_root}",
        ]

    def run(self, playbook: str, vars_file: Path, sandbox_root: Path) -> None:
        done = subprocess.run(
            self.command(playbook, vars_file, sandbox_root),
            cwd=PLAYBOOKS_DIR,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=WAIT_S,
            check=False,
        )
        if done.returncode != 0:
            output = done.stdout.decode(errors="replace")[-3000:]
            raise RuntimeError(f"bare {playbook} exited {done.returncode}:\n{output}")

    def copy(self, built: Path, sandbox_root: Path) -> None:
        """A copy of the deployments under `built` at `sandbox_root`, sparse like the images."""
        sandbox_root.mkdir()
        subprocess.run(
            ["cp", "-a", "--sparse=always", "--", *map(str, built.iterdir()), str(sandbox_root)],
            check=True,
        )

    async def teardown(self, vars_file: Path, built: Path) -> float:
        """Seconds of one destroy.yml on a copy of the deployment under `built`."""
        self._runs += 1
        sandbox_root = self.directory / f"teardown-{self._runs}"
        await asyncio.to_thread(self.copy, built, sandbox_root)
        t0 = time.perf_counter()
        await asyncio.to_thread(self.run, "destroy.yml", vars_file, sandbox_root)
        elapsed = time.perf_counter() - t0
        left = list(sandbox_root.iterdir())
        if left:
            raise RuntimeError(f"bare destroy.yml left {left}")
        sandbox_root.rmdir()
        return elapsed

    async def kill(self, vars_file: Path) -> tuple[float, float, bool]:
        """SIGTERM to the group of a deploy.yml running its first task: seconds until no
        process of the run is left, seconds until its group is gone, and whether it had to be
        SIGKILLed."""
        self._runs += 1
        sandbox_root = self.directory / f"kill-{self._runs}"
        ref = RunRef(job_id=f"{JOB_PREFIX}1-{self._runs}")
        process = subprocess.Popen(
            self.command("deploy.yml", vars_file, sandbox_root),
            cwd=PLAYBOOKS_DIR,
            env={**self.environment(), RUN_MARK: str(self.runner.data_dir(1, self._runs))},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.live.append((process, ref))
        # Running a task: ansible-playbook forked its first worker.
        await _wait(
            lambda: process.poll() is not None or len(self.runner.run_processes(ref)) >= 2,
            "the bare deploy.yml's first task",
        )
        if process.returncode is not None:
            raise RuntimeError(f"bare deploy.yml exited {process.returncode} before its kill")
        t0 = time.perf_counter()
        os.killpg(process.pid, signal.SIGTERM)
        group_gone: float | None = None
        killed = False
        while True:
            process.poll()  # reaps the leader: a zombie is gone
            if group_gone is None and not _group(process.pid):
                group_gone = time.perf_counter()
            if not self.runner.run_processes(ref):
                break
            if not killed and time.perf_counter() - t0 > KILL_AFTER_S:
                killed = True
                self.stop(process, ref)
            await asyncio.sleep(POLL_S)
        gone = time.perf_counter()
        process.wait()  # a zombie by now, if the last poll came before its end
        self.live.remove((process, ref))
        shutil.rmtree(sandbox_root, ignore_errors=True)
        return gone - t0, (group_gone or gone) - t0, killed

    def processes_left(self) -> int:
        return sum(len(self.runner.run_processes(ref)) for _, ref in self.live)

    def stop(self, process: subprocess.Popen[bytes], ref: RunRef) -> None:
        """SIGKILL to every process of a bare run, then reap its leader."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in self.runner.run_processes(ref):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        for process, ref in self.live:
            self.stop(process, ref)
        self.live.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


class Lifecycle:
    """The deployments of one measurement on `stack`, and the bare runs beside them."""

    def __init__(self, stack: ChaosStack, template: str) -> None:
        self.stack = stack
        self.template = template
        self.tag = uuid.uuid4().hex[:6]
        self.bare = BarePlaybooks(stack.root / "bare")
        self.runner = LocalRunner(
            Settings(runner_dir=stack.runner_dir, sandbox_root=stack.sandbox_root)
        )
        self.ids: list[int] = []
        self.timings = Timings()
        self._http: httpx.AsyncClient | None = None
        self._db: asyncpg.Connection | None = None
        self._headers: dict[str, str] = {}

    async def __aenter__(self) -> Lifecycle:
        self.bare.directory.mkdir(mode=0o700)
        self._http = httpx.AsyncClient(base_url=self.stack.api_url, timeout=120)
        answer = await self._http.post(
            "/api/auth/token",
            data={"username": OPERATOR, "password": self.stack.operator_password},
        )
        answer.raise_for_status()
        self._headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        self._db = await asyncpg.connect(self.stack.asyncpg_dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bare.close()
        if self._db is not None:
            await self._db.close()
        if self._http is not None:
            await self._http.aclose()

    # -- the measurement ---------------------------------------------------------------------

    async def measure(self, samples: int) -> dict[str, Any]:
        started = time.perf_counter()
        succeeded, vars_file, built = await self._prepare(samples)
        prepared = time.perf_counter() - started
        log(f"{samples} deployments succeeded and the bare one built in {prepared:.0f}s")
        for i, deployment_id in enumerate(succeeded):
            await self._destroy_sample(deployment_id)
            self.timings.bare_teardown.append(await self.bare.teardown(vars_file, built))
            await self._cancel_sample(i)
            gone, group_gone, killed = await self.bare.kill(vars_file)
            self.timings.bare_kill.append(gone)
            self.timings.bare_kill_group.append(group_gone)
            self.timings.bare_kill_sigkilled += killed
            log(f"sample {i + 1}/{samples} taken")
        figures: dict[str, Any] = {
            "lifecycle_samples": samples,
            "lifecycle_template": self.template,
            "lifecycle_prepare_s": prepared,
            **self.timings.figures(),
        }
        figures.update(await self._leftovers())
        return figures

    async def _prepare(self, samples: int) -> tuple[list[int], Path, Path]:
        """`samples` succeeded deployments for the destroys, and a bare deployment built by a
        direct deploy.yml with the vars file the local runner wrote for the first of them."""
        ids = [await self._launch(f"lc-destroy-{self.tag}-{i}") for i in range(samples)]
        vars_file = self.bare.directory / VARS_FILE
        source = self.runner.data_dir(ids[0], 1)
        await _wait((source / RUN_FILE).is_file, f"the first run of deployment {ids[0]}")
        shutil.copyfile(source / VARS_FILE, vars_file)
        built = self.bare.directory / "built"
        await asyncio.to_thread(self.bare.run, "deploy.yml", vars_file, built)
        for deployment_id in ids:
            status = await self._status_in(deployment_id, SETTLED)
            if status != S.SUCCEEDED:
                raise RuntimeError(f"deployment {deployment_id} ended {status}, not succeeded")
        return ids, vars_file, built

    async def _destroy_sample(self, deployment_id: int) -> None:
        t0, wall0 = time.perf_counter(), time.time()
        await self._operate(deployment_id, "destroy")
        await self._status_in(deployment_id, {S.DESTROYED})
        elapsed = time.perf_counter() - t0
        self.timings.destroy.append(elapsed)
        # Where the time went, from the teardown run's own record. `destroyed` follows the
        # playbook's last callback: ansible-runner may write its status a moment later.
        run_dir = await self._run_dir(deployment_id)
        artifacts = run_dir / "artifacts" / "destroy"
        await _wait((artifacts / "status").is_file, f"the end of {run_dir}")
        triggered = float(json.loads((run_dir / RUN_FILE).read_text())["triggered_at"])
        events = _event_times(artifacts)
        self.timings.destroy_to_trigger.append(triggered - wall0)
        self.timings.destroy_play.append(events["playbook_on_stats"] - events["playbook_on_start"])
        self.timings.destroy_after_play.append(wall0 + elapsed - events["playbook_on_stats"])
        self.timings.destroy_run.append((artifacts / "status").stat().st_mtime - triggered)

    async def _cancel_sample(self, i: int) -> None:
        for attempt in range(3):
            deployment_id = await self._launch(f"lc-cancel-{self.tag}-{i}-{attempt}")
            await self._status_in(deployment_id, {S.RUNNING}, or_final=True)
            ref = await self._run_ref(deployment_id)
            scans: list[int] = []  # processes found by each scan
            t0, wall0 = time.perf_counter(), time.time()
            no_process = asyncio.create_task(self._no_process_left(ref, scans))
            answer = await self._operate(deployment_id, "cancel", refused_ok=True)
            answered = time.perf_counter()
            if answer.status_code == 409:  # it settled first: destroyed, and another taken
                no_process.cancel()
                self.timings.cancel_missed += 1
                await self._status_in(deployment_id, SETTLED)
                await self._operate(deployment_id, "destroy")
                await self._status_in(deployment_id, {S.DESTROYED})
                continue
            status = await self._status_in(deployment_id, {S.CANCELLED, S.FAILED})
            cancelled = time.perf_counter()
            gone = await no_process
            if status != S.CANCELLED:
                raise RuntimeError(f"deployment {deployment_id} ended {status} after its cancel")
            self.timings.cancel_none_running += scans[0] == 0
            self.timings.cancel_answer.append(answered - t0)
            # When the worker's cancel reached the run (the runner's `cancel` wrote the time).
            signalled = float((self._data_dir(ref) / CANCEL_FILE).read_text())
            self.timings.cancel_to_runner.append(signalled - wall0)
            self.timings.cancel_no_process.append(gone - t0)
            self.timings.cancel_status.append(cancelled - t0)
            return
        raise RuntimeError("three deployments in a row settled before their cancel")

    # -- parts ---------------------------------------------------------------------------------

    async def _launch(self, name: str) -> int:
        assert self._http is not None
        answer = await self._http.post(
            "/api/deployments",
            json={"template_id": self.stack.template_ids[self.template], "deployment_name": name},
            headers={**self._headers, "Idempotency-Key": f"{name}-launch"},
        )
        if answer.status_code != 201:
            raise RuntimeError(f"launch {name}: HTTP {answer.status_code} {answer.text[:300]}")
        deployment_id = int(answer.json()["id"])
        self.ids.append(deployment_id)
        return deployment_id

    async def _operate(
        self, deployment_id: int, operation: str, refused_ok: bool = False
    ) -> httpx.Response:
        assert self._http is not None
        answer = await self._http.post(
            f"/api/deployments/{deployment_id}/{operation}",
            headers={**self._headers, "Idempotency-Key": f"lc-{operation}-{deployment_id}"},
        )
        if answer.status_code != 202 and not (refused_ok and answer.status_code == 409):
            raise RuntimeError(
                f"{operation} {deployment_id}: HTTP {answer.status_code} {answer.text[:300]}"
            )
        return answer

    async def _status_in(self, deployment_id: int, wanted: set[S], or_final: bool = False) -> S:
        """The deployment's status once it is one of `wanted`, or with `or_final` any final
        status (a deployment awaited `running` may have gone past it between two reads)."""
        assert self._db is not None
        deadline = time.monotonic() + WAIT_S
        status = None
        while time.monotonic() < deadline:
            status = S(await self._db.fetchval(STATUS_SQL, deployment_id))
            if status in wanted or (or_final and status.is_final):
                return status
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"deployment {deployment_id} still {status} after {WAIT_S:g}s")

    async def _run_ref(self, deployment_id: int) -> RunRef:
        """The deployment's current run, as the workflow recorded it."""
        assert self._db is not None
        return RunRef(job_id=str(await self._db.fetchval(JOB_SQL, deployment_id)))

    async def _run_dir(self, deployment_id: int) -> Path:
        """The directory of the deployment's current run."""
        return self._data_dir(await self._run_ref(deployment_id))

    def _data_dir(self, ref: RunRef) -> Path:
        """The directory of a run (the job id names it: local-<deployment id>-<run>)."""
        deployment, _, number = ref.job_id.removeprefix(JOB_PREFIX).partition("-")
        return self.runner.data_dir(int(deployment), int(number))

    async def _no_process_left(self, ref: RunRef, scans: list[int]) -> float:
        """perf_counter() when a scan first finds no process of the run."""
        while True:
            scans.append(len(await asyncio.to_thread(self.runner.run_processes, ref)))
            if not scans[-1]:
                return time.perf_counter()
            await asyncio.sleep(POLL_S)

    async def _leftovers(self) -> dict[str, Any]:
        """What is left once every deployment ended: counted, for the record and the test."""
        findings = await check(
            self.stack.asyncpg_dsn, self.ids, self.stack.runner_dir, self.stack.sandbox_root
        )
        summary = findings.summary()
        # The bare deployment the copies are made of goes with the bare directory, at the end.
        built = self.bare.directory / "built"
        images = [
            *self.stack.sandbox_root.rglob("*.img"),
            *(p for p in self.bare.directory.rglob("*.img") if built not in p.parents),
        ]
        return {
            "lifecycle_deployments": len(self.ids),
            "lifecycle_statuses": summary["statuses"],
            "lifecycle_not_final": summary["stuck"],
            "lifecycle_run_processes_left": summary["run_processes_left"]
            + self.bare.processes_left(),
            "lifecycle_image_files_left": len(images),
            "lifecycle_history_rows_duplicated": summary["history_rows_duplicated"],
        }


async def _wait(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_S:g}s for {what}")
        await asyncio.sleep(POLL_S)


def _event_times(artifacts: Path) -> dict[str, float]:
    """When each kind of event of the run happened (the first of each kind), as ansible-runner
    recorded them: `<counter>-<uuid>.json`, written whole (never the `-partial.json` files)."""
    times: dict[str, float] = {}
    for path in (artifacts / "job_events").glob("[0-9]*-*.json"):
        event = json.loads(path.read_text())
        if "created" in event and "event" in event:
            created = datetime.datetime.fromisoformat(event["created"]).timestamp()
            times[event["event"]] = min(created, times.get(event["event"], created))
    return times


def _group(pgid: int) -> list[int]:
    """Live processes (zombies left out) of the process group `pgid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def _stop_every_run(stack: ChaosStack) -> None:
    """A safety net after a failure: no run of the stack outlives it (its runs are detached)."""
    runner = LocalRunner(Settings(runner_dir=stack.runner_dir, sandbox_root=stack.sandbox_root))
    for run_file in stack.runner_dir.glob(f"[0-9]*/[0-9]*/{RUN_FILE}"):
        ref = RunRef(job_id=f"{JOB_PREFIX}{run_file.parent.parent.name}-{run_file.parent.name}")
        if runner.run_processes(ref):
            runner.cancel(ref)
