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
