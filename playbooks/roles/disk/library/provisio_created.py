#!/usr/bin/python
"""Ansible module: record, before the lvm backend creates anything, what it is about to create.

The teardown (tasks/lvm_absent.yml) removes what this record names and nothing else: a logical
volume or a mount point directory that existed before the deployment is never in it, so it is
never removed. The record merges with the one already there (a retried or repeated run adds what
it creates, never forgets what an earlier run created).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: provisio_created
short_description: Record the logical volumes and directories a deployment is about to create
description:
  - Looks at which of the disks' logical volumes (`lvs`) and which of their mount point
    directories, parents included, do not exist yet, and adds them to the deployment's record
    (a JSON file). Existing entries are kept. In check mode it reports what it would record and
    writes nothing.
options:
  path:
    description: The record file, created with its directory (mode 0700) when missing.
    type: path
    required: true
  deployment_id:
    description: The deployment the record belongs to.
    type: int
    required: true
  disks:
    description: The deployment's disks (volume_group, logical_volume, mount_point of each).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
record:
  description: The record after this run.
  type: dict
  returned: always
added:
  description: What this run added to the record.
  type: dict
  returned: always
"""


def existing_logical_volumes(module: AnsibleModule) -> set[tuple[str, str]]:
    """(volume group, logical volume) of every logical volume on the host."""
    lvs = module.get_bin_path("lvs", required=True)
    rc, out, err = module.run_command(
        [lvs, "--reportformat", "json", "--options", "vg_name,lv_name", "--all"]
    )
    if rc != 0:
        module.fail_json(msg=f"lvs failed (rc {rc}): {err.strip()}", rc=rc)
    try:
        reports = json.loads(out)["report"]
    except (ValueError, KeyError, TypeError):
        module.fail_json(msg=f"cannot read the output of lvs: {out[:500]!r}")
    return {(lv["vg_name"], lv["lv_name"]) for report in reports for lv in report.get("lv", [])}


def path_and_parents(path: str) -> list[str]:
    """The path and each of its parents, shallowest first: /srv/a/b gives /srv, /srv/a, /srv/a/b."""
    parts = [part for part in path.split("/") if part]
    return ["/" + "/".join(parts[: index + 1]) for index in range(len(parts))]


def read_record(module: AnsibleModule, path: str, deployment_id: int) -> dict[str, Any]:
    empty: dict[str, Any] = {
        "deployment_id": deployment_id,
        "logical_volumes": [],
        "directories": [],
    }
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        # Never overwrite a record that cannot be read: what it held would be forgotten.
        module.fail_json(msg=f"cannot read the record {path}: {exc}")
    if not isinstance(record, dict) or record.get("deployment_id") != deployment_id:
        module.fail_json(msg=f"{path} is not the record of deployment {deployment_id}")
    record.setdefault("logical_volumes", [])
    record.setdefault("directories", [])
    return record


def write_record(path: str, record: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".created.", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "deployment_id": {"type": "int", "required": True},
            "disks": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    record = read_record(module, params["path"], params["deployment_id"])
    known_lvs = {(lv["volume_group"], lv["logical_volume"]) for lv in record["logical_volumes"]}
    known_dirs = set(record["directories"])

    on_host = existing_logical_volumes(module)
    added: dict[str, list[Any]] = {"logical_volumes": [], "directories": []}
    for disk in params["disks"]:
        key = (disk["volume_group"], disk["logical_volume"])
        if key not in on_host and key not in known_lvs:
            entry = {
                "volume_group": key[0],
                "logical_volume": key[1],
                "mount_point": disk["mount_point"],
            }
            added["logical_volumes"].append(entry)
            known_lvs.add(key)
        for directory in path_and_parents(disk["mount_point"]):
            # lexists: a symbolic link (even a dangling one) is not ours either.
            if not os.path.lexists(directory) and directory not in known_dirs:
                added["directories"].append(directory)
                known_dirs.add(directory)

    changed = bool(added["logical_volumes"] or added["directories"])
    if changed:
        record["logical_volumes"] = record["logical_volumes"] + added["logical_volumes"]
        record["directories"] = sorted(known_dirs)
        if not module.check_mode:
            write_record(params["path"], record)
    module.exit_json(changed=changed, record=record, added=added)


if __name__ == "__main__":
    main()
