"""The pure rules of a resize: grow only, the deployment's own disks, each named once."""

from __future__ import annotations

from vocabulary.disks import DiskResize, DiskSpec, describe_resize, resize_errors, resized
from vocabulary.leases import extension_refusal
from vocabulary.operations import change_refusal
from vocabulary.statuses import DeploymentStatus


def spec(mount_point: str, size_gb: int) -> DiskSpec:
    return DiskSpec("ssd", size_gb, mount_point, "vg", mount_point.rsplit("/", 1)[-1], "ext4")


DISKS = [spec("/data/db", 20), spec("/data/wal", 5)]


def test_a_grow_is_accepted_and_applied_to_that_disk_only() -> None:
    asked = [DiskResize("/data/db", 40), DiskResize("/data/wal", 5)]
    assert resize_errors(DISKS, asked) == []
    assert [d.size_gb for d in resized(DISKS, asked)] == [40, 5]
    assert [d.size_gb for d in DISKS] == [20, 5]  # the deployment's own list is not changed
    assert describe_resize(DISKS, asked) == "/data/db 20→40 GB"


def test_a_shrink_names_the_disk_and_its_size() -> None:
    errors = resize_errors(DISKS, [DiskResize("/data/db", 40), DiskResize("/data/wal", 4)])
    assert errors == [
        {
            "loc": ["body", "disk_allocations", 1, "size_gb"],
            "msg": "the disk /data/wal is 5 GB; 4 GB would shrink it, and disks only grow",
            "type": "shrink",
        }
    ]


def test_unknown_repeated_empty_and_unchanged_asks_are_refused() -> None:
    def kinds(*asked: DiskResize) -> list[str]:
        return [error["type"] for error in resize_errors(DISKS, list(asked))]

    assert kinds(DiskResize("/data/other", 40)) == ["not_found"]
    assert kinds(DiskResize("/data/db", 40), DiskResize("/data/db", 50)) == ["duplicate"]
    assert kinds() == ["missing"]
    assert kinds(DiskResize("/data/db", 20)) == ["unchanged"]


def test_only_a_succeeded_deployment_is_changed() -> None:
    assert change_refusal(DeploymentStatus.SUCCEEDED) is None
    for status in DeploymentStatus:
        if status != DeploymentStatus.SUCCEEDED:
            assert change_refusal(status) is not None, status
    assert change_refusal(DeploymentStatus.TIMED_OUT) == (
        "the deployment is timed out: only a succeeded deployment can be resized or reconfigured"
    )


def test_a_lease_is_extended_while_a_resize_runs() -> None:
    assert extension_refusal(DeploymentStatus.UPDATING) is None
