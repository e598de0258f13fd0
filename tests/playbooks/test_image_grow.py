"""A grown image file's filesystem grows with it, data kept: the directory backend, run for real.

Mounted images (ext4 and xfs, real loop mounts as root): the loop device is told the file's new
size and the filesystem grows online; a file written through the mount before the grow is read
back after it, and statvfs shows the bigger filesystem. Unmounted images: ext4 grows offline on
the file (a file written with debugfs is read back, tune2fs shows the new block count); xfs grows
only mounted, so its grow is refused before anything changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.playbooks.support import GIB, disk
from tests.playbooks.test_deploy_playbook import CAN_LOOP_MOUNT, LOOP_MOUNT_SKIP, unmount_below
from tests.playbooks.test_lvm_filesystem_grow import CAP_SYS_RESOURCE, has_capability
from tests.playbooks.test_shrink_refused import Sandbox, debugfs, failed_items

MARKER = b"written before the grow\n"
HAVE_DEBUGFS = shutil.which("debugfs") is not None


def loop_devices(image: Path) -> list[str]:
    listing = subprocess.run(
        ["losetup", "--noheadings", "--output", "NAME", "--associated", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return listing.split()


def filesystem_bytes(mount_point: Path) -> int:
    stat = os.statvfs(mount_point)
    return stat.f_blocks * stat.f_frsize


def ext4_bytes(image: Path) -> int:
    out = subprocess.run(
        ["tune2fs", "-l", str(image)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[list[Sandbox]]:
    """Sandboxes made by a test; their mounts and loop devices are gone after it."""
    made: list[Sandbox] = []
    yield made
    for sandbox in made:
        unmount_below(sandbox.root)
        for image in (sandbox.root / str(sandbox.deployment_id) / ".provisio").glob("*.img"):
            for device in loop_devices(image):
                subprocess.run(["losetup", "--detach", device], check=False)


MOUNTED_FILESYSTEMS = [
    pytest.param(
        "ext4",
        marks=pytest.mark.skipif(
            not has_capability(CAP_SYS_RESOURCE),
            reason="growing a mounted ext4 (resize2fs's resize ioctl) needs CAP_SYS_RESOURCE, "
            "which root lacks on this machine",
        ),
    ),
    "xfs",
]


@pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)
@pytest.mark.parametrize("filesystem", MOUNTED_FILESYSTEMS)
def test_a_mounted_image_grows_online_with_its_data(
    tmp_path: Path, sandboxes: list[Sandbox], filesystem: str
) -> None:
    sandbox = Sandbox(tmp_path, 811, mount=True)
    sandboxes.append(sandbox)

    def data(size_gb: int) -> list[dict[str, object]]:
        return [
            disk(
                "/srv/data",
                size_gb=size_gb,
                volume_group="vg",
                logical_volume="data",
                filesystem_type=filesystem,
            )
        ]

    first = sandbox.deploy(data(1))
    assert first.rc == 0, first.output
    mount_point = sandbox.mount_point("/srv/data")
    (mount_point / "marker").write_bytes(MARKER)
    os.sync()
    before = filesystem_bytes(mount_point)
    assert before <= GIB

    grown = sandbox.deploy(data(3))

    assert grown.rc == 0, grown.output
    assert sandbox.image("data").stat().st_size == 3 * GIB
    (device,) = loop_devices(sandbox.image("data"))
    size = subprocess.run(
        ["blockdev", "--getsize64", device], capture_output=True, text=True, check=True
    ).stdout
    assert int(size) == 3 * GIB
    after = filesystem_bytes(mount_point)
    assert after > 2 * GIB, (before, after)
    assert (mount_point / "marker").read_bytes() == MARKER  # still mounted, online all along

    again = sandbox.deploy(data(3))
    assert again.rc == 0, again.output
    assert filesystem_bytes(mount_point) == after
    for task in (
        "Bring the loop devices up to their image files' size",
        "Grow the filesystems of the mounted image files",
    ):
        assert not any(item.get("changed") for item in again.item_results(task)), task


@pytest.mark.skipif(not HAVE_DEBUGFS, reason="debugfs (Debian package e2fsprogs) is not installed")
def test_an_unmounted_ext4_image_grows_with_its_data(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 812, mount=False)
    data = [disk("/srv/data", size_gb=1, volume_group="vg", logical_volume="data")]
    first = sandbox.deploy(data)
    assert first.rc == 0, first.output
    image = sandbox.image("data")
    (tmp_path / "marker").write_bytes(MARKER)
    debugfs(image, f"write {tmp_path / 'marker'} marker", write=True)
    assert ext4_bytes(image) == GIB

    grown = sandbox.deploy([{**data[0], "size_gb": 2}])

    assert grown.rc == 0, grown.output
    assert image.stat().st_size == 2 * GIB
    assert ext4_bytes(image) == 2 * GIB
    assert debugfs(image, "cat marker") == MARKER
    fsck = subprocess.run(["e2fsck", "-f", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_an_unmounted_xfs_image_is_not_grown(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 813, mount=False)
    data = disk(
        "/srv/data", size_gb=1, volume_group="vg", logical_volume="data", filesystem_type="xfs"
    )
    first = sandbox.deploy([data])
    assert first.rc == 0, first.output
    image = sandbox.image("data")
    before = (image.stat().st_size, image.stat().st_mtime_ns)

    refused = sandbox.deploy([{**data, "size_gb": 2}])

    assert refused.rc == 2, refused.output
    assert failed_items(refused, "Refuse to grow an unmounted xfs image file") == {
        "data": "The xfs filesystem of vg/data (/srv/data) grows only while mounted, and this "
        "host's directory backend does not mount its image files (provisio_directory_mount is "
        "false); it stays at 1 GiB. Nothing was changed."
    }
    assert "disk : Allocate the image files" not in refused.tasks
    assert (image.stat().st_size, image.stat().st_mtime_ns) == before
