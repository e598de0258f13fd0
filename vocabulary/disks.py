"""A disk allocation's fields, as a template states them and a deployment receives them."""

# No `from __future__ import annotations`: the data converter resolves these dataclasses' hints
# inside the workflow sandbox, whose sys.modules may lack this module; real annotations need no
# lookup there.

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DiskSpec:
    disk_type: str
    size_gb: int
    mount_point: str
    volume_group: str
    logical_volume: str
    filesystem_type: str
    allocation_params: dict[str, Any] = field(default_factory=dict)


# The columns a disk row has beyond its id and owner, in this order everywhere.
DISK_FIELDS = tuple(f.name for f in dataclasses.fields(DiskSpec))


@dataclass
class DiskOverride:
    """A deployment's change to one of its template's disks, matched by mount point."""

    mount_point: str
    size_gb: int | None = None
    filesystem_type: str | None = None


class DiskState(enum.StrEnum):
    """Where a deployment's disk stands on its host."""

    PLANNED = "planned"  # recorded, not built yet (or being built)
    ALLOCATED = "allocated"  # a deploy run succeeded: it exists on the host
    RELEASED = "released"  # a teardown removed it


@dataclass
class DiskResize:
    """A resize's ask for one of a deployment's disks, matched by mount point: its new size."""

    mount_point: str
    size_gb: int


def resize_errors(disks: list[DiskSpec], asked: list[DiskResize]) -> list[dict[str, Any]]:
    """Why `asked` is no resize of `disks` (FastAPI's error shape, under `disk_allocations`):
    each asked disk is one of the deployment's, named once, never smaller than it is (disks
    grow, never shrink), and at least one grows. Empty when it is one."""
    current = {disk.mount_point: disk.size_gb for disk in disks}
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def error(loc: list[str | int], msg: str, kind: str) -> None:
        errors.append({"loc": ["body", "disk_allocations", *loc], "msg": msg, "type": kind})

    for index, ask in enumerate(asked):
        if ask.mount_point in seen:
            error([index, "mount_point"], "duplicate mount point", "duplicate")
            continue
        seen.add(ask.mount_point)
        size = current.get(ask.mount_point)
        if size is None:
            error([index, "mount_point"], "matches no disk of this deployment", "not_found")
        elif ask.size_gb < size:
            msg = (
                f"the disk {ask.mount_point} is {size} GB; {ask.size_gb} GB would shrink it, "
                "and disks only grow"
            )
            error([index, "size_gb"], msg, "shrink")
    if not asked:
        error([], "name at least one disk to grow", "missing")
    elif not errors and all(current[ask.mount_point] == ask.size_gb for ask in asked):
        error([], "no disk grows: every size asked is the disk's size now", "unchanged")
    return errors


def resized(disks: list[DiskSpec], asked: list[DiskResize]) -> list[DiskSpec]:
    """`disks` with the sizes `asked` (a resize `resize_errors` accepted)."""
    sizes = {ask.mount_point: ask.size_gb for ask in asked}
    return [
        dataclasses.replace(disk, size_gb=sizes.get(disk.mount_point, disk.size_gb))
        for disk in disks
    ]


def describe_resize(disks: list[DiskSpec], asked: list[DiskResize]) -> str:
    """ "/data 20→40 GB, /logs 5→10 GB": the disks that grow."""
    current = {disk.mount_point: disk.size_gb for disk in disks}
    return ", ".join(
        f"{ask.mount_point} {current[ask.mount_point]}→{ask.size_gb} GB"
        for ask in asked
        if current.get(ask.mount_point) != ask.size_gb
    )
