#!/usr/bin/python
"""Ansible module: fail, before anything is changed, when the host lacks a tool the disks need.

`provisio doctor` imports this file too (devstack/host_tools.py), so the rule of which tool is
needed when is written once.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.process import get_bin_path

DOCUMENTATION = r"""
module: provisio_host_tools
short_description: Check that the host has the tools Provisio's disk work needs
description:
  - Looks each needed tool up in PATH and the sbin directories; fails naming every missing tool
    and its package. Changes nothing, so it also runs in check mode.
options:
  tools:
    description: The role's disk_host_tools table (name, package and the conditions of need).
    type: list
    elements: dict
    required: true
  backend:
    description: The disk backend, directory or lvm.
    type: str
    required: true
  filesystems:
    description: The filesystem types of the disks to make.
    type: list
    elements: str
    default: []
  loop_mount:
    description: Whether the directory backend loop-mounts its image files.
    type: bool
    default: false
"""


def needed_tools(
    tools: list[dict[str, Any]], *, backend: str, filesystems: list[str], loop_mount: bool
) -> list[dict[str, Any]]:
    """The rows of `tools` whose every condition holds for this run."""

    def needed(tool: dict[str, Any]) -> bool:
        if "filesystem" in tool and tool["filesystem"] not in filesystems:
            return False
        if "backend" in tool and tool["backend"] != backend:
            return False
        if tool.get("loop_mount") and not (backend == "directory" and loop_mount):
            return False
        return True

    return [tool for tool in tools if needed(tool)]


def find_tool(name: str) -> str | None:
    """The tool's path (PATH, then /sbin, /usr/sbin, /usr/local/sbin), or None."""
    try:
        return str(get_bin_path(name))
    except ValueError:
        return None


def missing_message(missing: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{tool['name']} (package {tool['package']})" for tool in missing)
    packages = " ".join(sorted({str(tool["package"]) for tool in missing}))
    return (
        f"this host lacks {names}; install with `apt-get install -y {packages}` "
        "(or your system's equivalent). Nothing was changed."
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "tools": {"type": "list", "elements": "dict", "required": True},
            "backend": {"type": "str", "required": True},
            "filesystems": {"type": "list", "elements": "str", "default": []},
            "loop_mount": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    tools = needed_tools(
        params["tools"],
        backend=params["backend"],
        filesystems=params["filesystems"],
        loop_mount=params["loop_mount"],
    )
    found = {tool["name"]: find_tool(tool["name"]) for tool in tools}
    missing = [tool for tool in tools if found[tool["name"]] is None]
    if missing:
        module.fail_json(msg=missing_message(missing), missing=[tool["name"] for tool in missing])
    module.exit_json(changed=False, tools=found)


if __name__ == "__main__":
    main()
