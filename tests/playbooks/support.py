"""Helpers shared by the playbook tests: real ansible-playbook and ansible-runner runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.local_runner import LocalRunner
from vocabulary.runs import RunRef, RunStatus

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
CALLBACK_PLUGINS = PLAYBOOKS / "callback_plugins"
VENV_BIN = Path(sys.executable).parent
GIB = 1024**3


def ansible_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment of a direct ansible-playbook run that writes nowhere but `tmp`."""
    env = {
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)]),
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


def run_ansible(
    args: list[str], tmp: Path, *, cwd: Path = PLAYBOOKS, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=ansible_env(tmp, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_final(runner: LocalRunner, ref: RunRef, timeout: float = 300) -> RunStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = runner.status(ref)
        if status.state.is_final:
            return status
        time.sleep(0.25)
    raise AssertionError(f"{ref.job_id} still {runner.status(ref)} after {timeout}s")


def deployment(deployment_id: int, *, name: str = "shop", **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": deployment_id,
        "name": name,
        "template": "web-small",
        "service_type": "web",
        "configuration": {"replicas": 2, "tier": "gold"},
    }
    value.update(overrides)
    return value


def disk(
    mount_point: str,
    *,
    size_gb: int = 1,
    volume_group: str = "vg_data",
    logical_volume: str = "lv0",
    filesystem_type: str = "ext4",
) -> dict[str, Any]:
    return {
        "disk_type": "ssd",
        "size_gb": size_gb,
        "mount_point": mount_point,
        "volume_group": volume_group,
        "logical_volume": logical_volume,
        "filesystem_type": filesystem_type,
        "allocation_params": {},
    }


def blkid_type(path: Path) -> str:
    return subprocess.run(
        ["blkid", "-o", "value", "-s", "TYPE", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def image_path(sandbox: Path, deployment_id: int, volume_group: str, logical_volume: str) -> Path:
    """Where the directory backend keeps a disk's image (named like its /dev/mapper device)."""
    name = f"{volume_group.replace('-', '--')}-{logical_volume.replace('-', '--')}.img"
    return sandbox / str(deployment_id) / ".provisio" / name


def tasks_by_name(output: str) -> dict[str, dict[str, Any]]:
    """Per task name, localhost's result, from the ansible.posix.json stdout callback."""
    report = json.loads(output)
    return {
        task["task"]["name"]: task["hosts"]["localhost"]
        for play in report["plays"]
        for task in play["tasks"]
        if "localhost" in task["hosts"]
    }


@dataclass
class PlaybookRun:
    """One ansible-playbook run, read from the ansible.posix.json stdout callback."""

    rc: int
    tasks: dict[str, dict[str, Any]]
    stats: dict[str, Any]
    output: str  # the end of stdout and all of stderr, for assertion messages

    def item_results(self, task: str) -> list[dict[str, Any]]:
        return list(self.tasks[f"disk : {task}"].get("results", []))


def run_playbook(playbook: str, vars_file: Path, tmp: Path, *extra: str, **env: str) -> PlaybookRun:
    """`ansible-playbook <playbook> -e @vars_file`, for real, with the JSON stdout callback."""
    result = subprocess.run(
        ["ansible-playbook", playbook, "-e", f"@{vars_file}", *extra],
        cwd=PLAYBOOKS,
        env=ansible_env(tmp, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        tasks = tasks_by_name(result.stdout)
        stats = json.loads(result.stdout)["stats"]
    except (ValueError, KeyError):
        raise AssertionError(result.stdout + result.stderr) from None
    return PlaybookRun(
        rc=result.returncode,
        tasks=tasks,
        stats=stats,
        output=result.stdout[-6000:] + result.stderr,
    )
