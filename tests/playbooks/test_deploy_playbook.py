"""playbooks/deploy.yml with the directory backend, run for real through LocalRunner
(ansible-runner + ansible-playbook against localhost) in tmp dirs, with the callback plugin
posting to a receiver double that verifies every signature."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.local_runner import LocalRunner
from pipeline.runner import PipelineRequest
from settings import Settings
from tests.playbooks.callback_receiver import CallbackReceiverDouble
from tests.playbooks.support import (
    GIB,
    blkid_type,
    deployment,
    disk,
    image_path,
    wait_final,
)
from vocabulary.runs import RunRef, RunState, RunStatus

CAN_LOOP_MOUNT = os.geteuid() == 0 and Path("/dev/loop-control").exists()
LOOP_MOUNT_SKIP = "loop mounts need root and /dev/loop-control"

BASIC = 101
MOUNTED = 102
INVALID = 103


@dataclass
class Run:
    runner: LocalRunner
    ref: RunRef
    status: RunStatus
    path: str  # the callback path its events were posted to


@dataclass
class Runs:
    sandbox: Path
    receiver: CallbackReceiverDouble
    disks: dict[int, list[dict[str, Any]]]
    first: dict[int, Run]
    second: dict[int, Run]


def basic_disks() -> list[dict[str, Any]]:
    return [
        disk("/srv/data", size_gb=1, volume_group="vg-app", logical_volume="data"),
        disk(
            "/srv/logs",
            size_gb=2,
            volume_group="vg-app",
            logical_volume="logs",
            # xfs as xfs: `make test` installs xfsprogs; without it the run fails, loudly.
            filesystem_type="xfs",
        ),
    ]


def start(
    runner: LocalRunner,
    receiver: CallbackReceiverDouble,
    deployment_id: int,
    disks: list[dict[str, Any]],
    round_: int,
) -> tuple[RunRef, str]:
    path = f"/round{round_}/api/deployments/{deployment_id}/callback"
    token = f"token-{deployment_id}-{round_}"
    request = PipelineRequest(
        deployment_id=deployment_id,
        workflow_id=f"deploy-{deployment_id}",
        callback_url=receiver.url(path, token),
        callback_token=token,
        variables={"provisio_deployment": deployment(deployment_id), "provisio_disks": disks},
    )
    assert runner.find_run(deployment_id, 1) is None
    ref = runner.trigger(request)
    assert ref.job_id == f"local-{deployment_id}-1"
    return ref, path


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, receiver: CallbackReceiverDouble
) -> Iterator[Runs]:
    """Two rounds of runs, each round's runs concurrently: the second round repeats the first
    against the same sandbox (a fresh runner directory, as after losing the worker's state)."""
    base = tmp_path_factory.mktemp("deploy")
    sandbox = base / "sandbox"
    disks = {
        BASIC: basic_disks(),
        MOUNTED: [disk("/data", size_gb=1, volume_group="vg", logical_volume="lv")],
        # Fails validation: /etc is never a mount point.
        INVALID: [disk("/etc/evil", volume_group="vg", logical_volume="lv")],
    }
    first_round = [BASIC, INVALID] + ([MOUNTED] if CAN_LOOP_MOUNT else [])
    second_round = [BASIC] + ([MOUNTED] if CAN_LOOP_MOUNT else [])
    try:
        rounds: list[dict[int, Run]] = []
        for round_, ids in ((1, first_round), (2, second_round)):
            runner_dir = base / f"runs{round_}"
            plain = LocalRunner(Settings(runner_dir=runner_dir, sandbox_root=sandbox))
            mounting = LocalRunner(
                Settings(runner_dir=runner_dir, sandbox_root=sandbox, directory_mount=True)
            )
            started = {
                deployment_id: (
                    (mounting if deployment_id == MOUNTED else plain),
                    *start(
                        mounting if deployment_id == MOUNTED else plain,
                        receiver,
                        deployment_id,
                        disks[deployment_id],
                        round_,
                    ),
                )
                for deployment_id in ids
            }
            rounds.append(
                {
                    deployment_id: Run(runner, ref, wait_final(runner, ref), path)
                    for deployment_id, (runner, ref, path) in started.items()
                }
            )
        yield Runs(sandbox, receiver, disks, rounds[0], rounds[1])
    finally:
        unmount_below(sandbox)


def unmount_below(root: Path) -> None:
    listing = subprocess.run(
        ["findmnt", "--raw", "--noheadings", "--output", "TARGET"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    for target in sorted((t for t in listing if t.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", target], check=False)


def mount_of(target: Path) -> dict[str, str] | None:
    result = subprocess.run(
        ["findmnt", "--json", "--output", "SOURCE,FSTYPE,OPTIONS", "--mountpoint", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    filesystems: list[dict[str, str]] = json.loads(result.stdout)["filesystems"]
    return filesystems[0]


def events_of(runs: Runs, run: Run) -> list[dict[str, Any]]:
    return runs.receiver.accepted_events(run.path)


# -- the first run ------------------------------------------------------------------------------


def test_the_run_succeeds_and_reports_its_stats(runs: Runs) -> None:
    run = runs.first[BASIC]
    assert run.status.state is RunState.SUCCEEDED, run.status
    assert run.status.stats is not None
    localhost = run.status.stats["localhost"]
    assert localhost["failures"] == 0 and localhost["unreachable"] == 0
    assert localhost["changed"] >= 4  # state dir, images, filesystems, mount dirs, manifest


def test_image_files_are_sparse_with_the_requested_sizes(runs: Runs) -> None:
    for spec in runs.disks[BASIC]:
        image = image_path(runs.sandbox, BASIC, spec["volume_group"], spec["logical_volume"])
        info = image.stat()
        assert info.st_size == spec["size_gb"] * GIB
        assert info.st_blocks * 512 < info.st_size // 4  # sparse: mostly unallocated
        assert info.st_mode & 0o777 == 0o600
    # "-" in VG/LV names is doubled, as in /dev/mapper: vg-app/data -> vg--app-data.img
    assert (runs.sandbox / str(BASIC) / ".provisio" / "vg--app-data.img").is_file()


def test_the_images_carry_real_filesystems(runs: Runs) -> None:
    for spec in runs.disks[BASIC]:
        image = image_path(runs.sandbox, BASIC, spec["volume_group"], spec["logical_volume"])
        assert blkid_type(image) == spec["filesystem_type"]
    # And, independently of blkid, the filesystems' own magic numbers.
    with image_path(runs.sandbox, BASIC, "vg-app", "data").open("rb") as ext4:
        ext4.seek(1024 + 0x38)  # the ext2/3/4 superblock's s_magic
        assert ext4.read(2) == b"\x53\xef"
    with image_path(runs.sandbox, BASIC, "vg-app", "logs").open("rb") as xfs:
        assert xfs.read(4) == b"XFSB"


def test_mount_point_directories_without_mounting(runs: Runs) -> None:
    for spec in runs.disks[BASIC]:
        directory = runs.sandbox / str(BASIC) / spec["mount_point"].lstrip("/")
        assert directory.is_dir()
        assert mount_of(directory) is None  # provisio_directory_mount defaults to false
    assert not (runs.sandbox / str(BASIC) / ".provisio" / "fstab").exists()


def test_the_manifest_records_the_deployment(runs: Runs) -> None:
    manifest = json.loads((runs.sandbox / str(BASIC) / ".provisio" / "deployment.json").read_text())
    assert manifest == {"deployment": deployment(BASIC), "disks": runs.disks[BASIC]}


def test_the_vars_file_is_private(runs: Runs) -> None:
    run = runs.first[BASIC]
    data_dir = run.runner.runner_dir / str(BASIC) / "1"
    assert data_dir == run.runner.data_dir(BASIC, 1)
    assert (data_dir / "vars.yml").stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert data_dir.parent.stat().st_mode & 0o777 == 0o700


def test_callback_events_are_signed_numbered_and_end_with_stats(runs: Runs) -> None:
    run = runs.first[BASIC]
    requests = runs.receiver.received(run.path)
    assert requests and all(r.signature_ok and r.status == 202 for r in requests)
    events = events_of(runs, run)
    assert [e["counter"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "playbook_on_start"
    assert events[0]["data"]["playbook"] == "deploy.yml"
    assert events[-1]["event"] == "playbook_on_stats"
    assert events[-1]["data"]["total_events"] == len(events)
    # The callback's stats and the runner's agree.
    assert events[-1]["data"]["stats"] == run.status.stats
    names = {e["event"] for e in events}
    assert {"playbook_on_task_start", "runner_on_ok", "runner_on_skipped"} <= names
    assert "runner_on_failed" not in names
    images = [e for e in events if e["task"] == "disk : Allocate the image files"]
    assert [e["event"] for e in images] == ["playbook_on_task_start", "runner_on_ok"]
    assert images[1]["host"] == "localhost" and images[1]["data"]["changed"] is True


# -- the second run -----------------------------------------------------------------------------


def test_a_second_run_changes_nothing(runs: Runs) -> None:
    run = runs.second[BASIC]
    assert run.status.state is RunState.SUCCEEDED, run.status
    assert run.status.stats is not None
    assert run.status.stats["localhost"]["changed"] == 0
    assert run.status.stats["localhost"]["failures"] == 0
    events = events_of(runs, run)
    assert events[-1]["event"] == "playbook_on_stats"
    assert not [e for e in events if e["data"].get("changed")]
    for spec in runs.disks[BASIC]:  # and the images are still there, same size, same filesystem
        image = image_path(runs.sandbox, BASIC, spec["volume_group"], spec["logical_volume"])
        assert image.stat().st_size == spec["size_gb"] * GIB
        assert blkid_type(image) == spec["filesystem_type"]


# -- loop mounts --------------------------------------------------------------------------------


@pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)
def test_loop_mount_when_asked(runs: Runs) -> None:
    run = runs.first[MOUNTED]
    assert run.status.state is RunState.SUCCEEDED, run.status
    target = runs.sandbox / str(MOUNTED) / "data"
    mount = mount_of(target)
    assert mount is not None, f"{target} is not a mount point"
    assert mount["fstype"] == "ext4"
    assert mount["source"].startswith("/dev/loop")
    assert {"nodev", "nosuid"} <= set(mount["options"].split(","))
    assert (target / "lost+found").is_dir()  # the image's filesystem, not the sandbox's
    fstab = (runs.sandbox / str(MOUNTED) / ".provisio" / "fstab").read_text()
    assert str(target) in fstab  # the sandbox's own fstab, never /etc/fstab
    assert str(runs.sandbox) not in Path("/etc/fstab").read_text()

    again = runs.second[MOUNTED]
    assert again.status.state is RunState.SUCCEEDED, again.status
    assert again.status.stats is not None
    assert again.status.stats["localhost"]["changed"] == 0
    assert mount_of(target) == mount  # still the same single mount


# -- failure ------------------------------------------------------------------------------------


def test_a_failing_task_fails_the_run_and_names_host_and_task(runs: Runs) -> None:
    run = runs.first[INVALID]
    assert run.status.state is RunState.FAILED
    assert run.status.reason is not None
    assert run.status.reason.startswith(
        'task "disk : Check each disk\'s mount point" failed on localhost: '
        "One or more items failed: Disk 0: mount_point must be"
    )
    assert run.status.stats is not None and run.status.stats["localhost"]["failures"] == 1

    events = events_of(runs, run)
    failed = [e for e in events if e["event"] == "runner_on_failed"]
    assert len(failed) == 1
    assert failed[0]["host"] == "localhost"
    assert failed[0]["task"] == "disk : Check each disk's mount point"
    assert failed[0]["data"]["failed"] is True
    assert "Disk 0: mount_point must be" in failed[0]["data"]["msg"]
    assert events[-1]["event"] == "playbook_on_stats"
    assert events[-1]["data"]["stats"]["localhost"]["failures"] == 1
    assert not (runs.sandbox / str(INVALID)).exists()  # validation comes before any change


# -- the runner's bookkeeping -------------------------------------------------------------------


def test_find_run_and_status_of_unknown_runs(runs: Runs) -> None:
    runner = runs.first[BASIC].runner
    assert runner.find_run(BASIC, 1) == RunRef(job_id=f"local-{BASIC}-1")
    assert runner.find_run(BASIC, 2) is None  # each run of a deployment is its own
    assert runner.find_run(999, 1) is None
    assert runner.status(RunRef(job_id="local-999-1")).state is RunState.MISSING
    assert runner.status(RunRef(job_id=f"local-{BASIC}-2")).state is RunState.MISSING
    for job_id in ("jenkins-5", f"local-{BASIC}", "local-x-1", f"local-{BASIC}-1-2"):
        assert runner.status(RunRef(job_id=job_id)).state is RunState.MISSING, job_id


def test_trigger_is_not_repeated_for_a_deployment_that_has_a_run(
    runs: Runs, receiver: CallbackReceiverDouble
) -> None:
    run = runs.first[BASIC]
    before = len(receiver.received(run.path))
    request = PipelineRequest(
        deployment_id=BASIC,
        workflow_id="deploy-again",
        callback_url=receiver.url(run.path, "token-again"),
        callback_token="token-again",
        variables={"provisio_deployment": deployment(BASIC), "provisio_disks": []},
    )
    assert run.runner.trigger(request) == run.ref
    assert run.runner.status(run.ref).state is RunState.SUCCEEDED
    assert len(receiver.received(run.path)) == before
