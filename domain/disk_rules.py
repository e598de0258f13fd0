"""What a disk allocation may say: mount points, LVM names, filesystems.

Kept in step with the playbook's own assertions (playbooks/roles/disk/tasks/validate.yml): the API
refuses early with a field path, the playbook refuses again on the host.
"""

from __future__ import annotations

import posixpath
import re

FILESYSTEMS = ("ext4", "xfs")
MAX_DISK_GB = 16_384
MAX_TOTAL_GB = 65_536
MOUNT_PREFIXES = ("/data", "/srv", "/opt", "/var/lib", "/mnt")
FORBIDDEN_MOUNTS = ("/", "/etc", "/boot", "/usr", "/proc", "/sys", "/dev", "/bin", "/sbin", "/lib")
# The playbook's own pattern (playbooks/roles/disk/vars/main.yml: disk_path_pattern).
MOUNT_PATH = re.compile(r"^(/[A-Za-z0-9._@+-]+)+$")
LVM_NAME = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")
LVM_MAX = 64
LV_RESERVED_NAMES = ("snapshot", "pvmove")
LV_RESERVED_PARTS = (
    "_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare",
    "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata",
)  # fmt: skip


def _under(path: str, prefix: str) -> bool:
    """Prefix match on a path boundary: /data2 is not under /data."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def mount_point_error(path: str) -> str | None:
    if not isinstance(path, str) or not path.startswith("/"):
        return "must be an absolute path"
    if len(path) > 255 or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return "must be at most 255 characters without whitespace or control characters"
    if ".." in path.split("/") or posixpath.normpath(path) != path:
        return "must be a normalised path (no '..', '.', '//' or trailing '/')"
    if not MOUNT_PATH.match(path):
        return "may use letters, digits and . _ @ + - in each part only"
    if any(path == f or (f != "/" and _under(path, f)) for f in FORBIDDEN_MOUNTS):
        return "is a system path"
    if not any(_under(path, prefix) and path != prefix for prefix in MOUNT_PREFIXES):
        return f"must be below one of {', '.join(MOUNT_PREFIXES)}"
    return None


def lvm_name_error(name: str, *, logical_volume: bool) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= LVM_MAX:
        return f"must be 1 to {LVM_MAX} characters"
    if name in (".", "..") or not LVM_NAME.match(name):
        return "may use letters, digits and + _ . - only, and may not start with '-'"
    if logical_volume and (
        name in LV_RESERVED_NAMES
        or name.startswith(LV_RESERVED_NAMES)
        or any(part in name for part in LV_RESERVED_PARTS)
    ):
        return "is a name LVM reserves for itself"
    return None


def filesystem_error(filesystem: str) -> str | None:
    return None if filesystem in FILESYSTEMS else f"must be one of {', '.join(FILESYSTEMS)}"


def size_bounds(allocation_params: dict[str, object] | None = None) -> tuple[int, int]:
    """A disk's size bounds: the template's `min_size_gb`/`max_size_gb` within the global cap."""
    params = allocation_params or {}
    low, high = params.get("min_size_gb", 1), params.get("max_size_gb", MAX_DISK_GB)
    low = low if isinstance(low, int) and not isinstance(low, bool) and low >= 1 else 1
    high = high if isinstance(high, int) and not isinstance(high, bool) else MAX_DISK_GB
    return low, min(high, MAX_DISK_GB)


def size_error(size_gb: object, allocation_params: dict[str, object] | None = None) -> str | None:
    low, high = size_bounds(allocation_params)
    if isinstance(size_gb, bool) or not isinstance(size_gb, int) or not low <= size_gb <= high:
        return f"must be an integer from {low} to {high}"
    return None
