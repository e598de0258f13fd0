"""The local runner's runs and cancel, with real ansible-runner and ansible-playbook processes.

The playbooks here are the test's own (LocalRunner's `playbooks_dir`): a deploy.yml that blocks in
a task until it is killed, leaving processes behind in every way a task can (a child that ignores
SIGTERM, a daemonised async job in a session of its own), and a destroy.yml that ends at once.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.local_runner import CANCEL_FILE, LocalRunner
from pipeline.runner import PipelineRequest
from settings import Settings
from tests.playbooks.support import PLAYBOOKS, wait_final
from vocabulary.runs import RunAction, RunRef, RunState

BLOCKING_DEPLOY = """
- name: Deploy, or block until killed when the deployment is called "block"
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a process in a session of its own that ignores SIGTERM
      ansible.builtin.command:
        argv: [setsid, sh, -c, 'trap "" TERM; sleep 600']
      async: 600
      poll: 0
      when: provisio_deployment.name == 'block'
    - name: Block in a command whose child ignores SIGTERM
      ansible.builtin.command:
        argv: [sh, -c, 'trap "" TERM; sleep 600 & sleep 600']
      when: provisio_deployment.name == 'block'
    - name: Deploy
      ansible.builtin.debug:
        msg: deployed
"""
QUICK_DESTROY = """
- name: Destroy
  hosts: all
  gather_facts: false
  tasks:
    - name: Destroy
      ansible.builtin.debug:
        msg: destroyed
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRunner]:
    # ansible writes ~/.ansible (and async jobs ~/.ansible_async); the runner passes HOME on.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    playbooks = tmp_path / "playbooks"
    (playbooks / "inventory").mkdir(parents=True)
    shutil.copy(PLAYBOOKS / "ansible.cfg", playbooks / "ansible.cfg")
    shutil.copy(PLAYBOOKS / "inventory" / "localhost.yml", playbooks / "inventory")
    (playbooks / "deploy.yml").write_text(BLOCKING_DEPLOY)
    (playbooks / "destroy.yml").write_text(QUICK_DESTROY)
    local = LocalRunner(
        Settings(runner_dir=tmp_path / "runs", sandbox_root=tmp_path / "sandbox"),
        playbooks_dir=playbooks,
        cancel_grace_s=2,
        cancel_timeout_s=30,
    )
    refs: list[RunRef] = []
    original = local.trigger

    def trigger(request: PipelineRequest) -> RunRef:
        ref = original(request)
        refs.append(ref)
        return ref

    local.trigger = trigger  # type: ignore[method-assign]
    yield local
    for ref in refs:  # nothing outlives a test, whatever it asserted
        local.cancel(ref)


def request(
    deployment_id: int,
    run: int = 1,
    *,
    name: str = "shop",
    action: RunAction = RunAction.DEPLOY,
) -> PipelineRequest:
    return PipelineRequest(
        deployment_id=deployment_id,
        workflow_id=f"deployment-{deployment_id}",
        # Nothing listens here: the callback plugin is not in these playbooks' directory anyway.
        callback_url=f"http://127.0.0.1:9/api/deployments/{deployment_id}/callback",
        callback_token="token",
        variables={"provisio_deployment": {"id": deployment_id, "name": name}},
        action=action,
        run=run,
    )


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def live(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def in_sessions(sessions: set[int]) -> list[int]:
    """Every live process of the host in one of `sessions`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and live(int(entry.name)):
            if session_of(int(entry.name)) in sessions:
                found.append(int(entry.name))
    return found


def wait_until_blocked(runner: LocalRunner, ref: RunRef, timeout: float = 120) -> list[int]:
    """The run's pids once its three `sleep 600` processes are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = runner.run_processes(ref)
        if sum(cmdline(pid) == ["sleep", "600"] for pid in pids) >= 3:
            return pids
        assert not runner.status(ref).state.is_final, runner.status(ref)
        time.sleep(0.2)
    raise AssertionError(f"{ref.job_id} never reached its blocking task")


def test_cancel_mid_playbook_leaves_no_process_of_the_run(runner: LocalRunner) -> None:
    ref = runner.trigger(request(11, name="block"))
    pids = wait_until_blocked(runner, ref)
    assert runner.status(ref).state is RunState.RUNNING
    # The run spans several sessions: ansible-runner's, ansible-playbook's (a pty of its own),
    # its workers', and the async job that made itself a daemon.
    sessions = {sid for pid in pids if (sid := session_of(pid)) is not None}
    assert len(sessions) >= 3
    assert os.getsid(0) not in sessions  # never the test's (the worker's) own

    started = time.monotonic()
    runner.cancel(ref)
    took = time.monotonic() - started

    assert [pid for pid in pids if live(pid)] == []
    assert in_sessions(sessions) == []
    assert runner.run_processes(ref) == []
    assert took < 30
    status = runner.status(ref)
    assert status.state is RunState.ABORTED and status.reason == "canceled", status
    # Again: harmless, and quick, as there is nothing left to stop.
    runner.cancel(ref)
    assert runner.status(ref).state is RunState.ABORTED
    assert runner.find_run(11, 1) == ref


def test_cancel_of_a_finished_run_changes_nothing(runner: LocalRunner) -> None:
    ref = runner.trigger(request(12))
    assert wait_final(runner, ref, timeout=120).state is RunState.SUCCEEDED
    runner.cancel(ref)
    assert runner.status(ref).state is RunState.SUCCEEDED
    assert not (runner.data_dir(12, 1) / CANCEL_FILE).exists()
    runner.cancel(RunRef("local-12-9"))  # a run that never was
    runner.cancel(RunRef("queue:12"))  # not a local run


def test_each_run_of_a_deployment_is_its_own(runner: LocalRunner) -> None:
    first = runner.trigger(request(13, 1))
    assert first == RunRef("local-13-1")
    assert runner.find_run(13, 1) == first
    assert runner.find_run(13, 2) is None
    assert wait_final(runner, first, timeout=120).state is RunState.SUCCEEDED

    second = runner.trigger(request(13, 2, action=RunAction.DESTROY))
    assert second == RunRef("local-13-2")
    assert runner.find_run(13, 2) == second
    assert runner.find_run(13, 1) == first
    assert wait_final(runner, second, timeout=120).state is RunState.SUCCEEDED
    # Each in its own directory, the action's playbook run and recorded under its name.
    assert runner.data_dir(13, 1) != runner.data_dir(13, 2)
    deploy_out = (runner.data_dir(13, 1) / "artifacts" / "deploy" / "stdout").read_text()
    destroy_out = (runner.data_dir(13, 2) / "artifacts" / "destroy" / "stdout").read_text()
    assert "deployed" in deploy_out and "destroyed" not in deploy_out
    assert "destroyed" in destroy_out and "deployed" not in destroy_out
    # A repeated trigger of a run that exists starts nothing new.
    assert runner.trigger(request(13, 2, action=RunAction.DESTROY)) == second
    assert sorted(p.name for p in (runner.runner_dir / "13").iterdir()) == ["1", "2"]


def test_cancelling_one_run_leaves_the_other_deployments_runs_alone(runner: LocalRunner) -> None:
    victim = runner.trigger(request(14, name="block"))
    bystander = runner.trigger(request(15, name="block"))
    wait_until_blocked(runner, victim)
    survivors = wait_until_blocked(runner, bystander)

    runner.cancel(victim)

    assert runner.run_processes(victim) == []
    assert all(live(pid) for pid in survivors)
    assert runner.status(bystander).state is RunState.RUNNING
    runner.cancel(bystander)
    assert runner.status(bystander).state is RunState.ABORTED


def test_a_run_number_below_one_is_refused(runner: LocalRunner) -> None:
    with pytest.raises(ValueError, match="count from 1"):
        runner.trigger(request(16, 0))
    assert not (runner.runner_dir / "16" / "0").exists()
