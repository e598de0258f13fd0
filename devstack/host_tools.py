"""`provisio doctor`: the host tools the playbooks (and the tests) need, checked and installed.

The table of tools and the rule of which is needed when live in the disk role
(`disk_host_tools` in its vars, `needed_tools` in its `provisio_host_tools` module), which checks
them again on every run before it changes anything. This module reads both, so a tool added there
is checked here too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from settings import PROJECT_ROOT, Settings

DISK_ROLE = PROJECT_ROOT / "playbooks" / "roles" / "disk"
CHROMIUM = Path(os.environ.get("PROVISIO_CHROMIUM", "/usr/bin/chromium"))


@dataclass(frozen=True)
class Check:
    name: str
    package: str
    why: str
    path: str | None

    @property
    def ok(self) -> bool:
        return self.path is not None


@cache
def _role_vars() -> dict[str, Any]:
    return dict(yaml.safe_load((DISK_ROLE / "vars" / "main.yml").read_text()))


@cache
def _host_tools_module() -> ModuleType:
    """The role's Ansible module, loaded from its file (it is not a package of this project)."""
    path = DISK_ROLE / "library" / "provisio_host_tools.py"
    spec = importlib.util.spec_from_file_location("provisio_host_tools", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _why(tool: dict[str, Any]) -> str:
    if "filesystem" in tool:
        return f"{tool['filesystem']} disks"
    if "backend" in tool:
        return f"the {tool['backend']} disk backend"
    if tool.get("loop_mount"):
        return "loop-mounting image files"
    return "every disk"


def checks(settings: Settings, *, for_tests: bool = False) -> list[Check]:
    """What this host needs: the disk tools for the local runner as configured (any filesystem
    a template may ask for); for the test suite, every backend's tools and Chromium."""
    module = _host_tools_module()
    role = _role_vars()
    filesystems = list(role["disk_filesystem_types"])
    table = role["disk_host_tools"]
    if for_tests:
        tools = [
            tool
            for backend in ("directory", "lvm")
            for tool in module.needed_tools(
                table, backend=backend, filesystems=filesystems, loop_mount=True
            )
        ]
    else:
        tools = module.needed_tools(
            table,
            backend=settings.disk_backend,
            filesystems=filesystems,
            loop_mount=settings.directory_mount,
        )
    found: dict[str, Check] = {}
    for tool in tools:
        found.setdefault(
            tool["name"],
            Check(tool["name"], tool["package"], _why(tool), module.find_tool(tool["name"])),
        )
    result = list(found.values())
    if for_tests:
        path = str(CHROMIUM) if CHROMIUM.exists() else None
        result.append(Check("chromium", "chromium", "the browser tests", path))
    return result


def _installer() -> list[str] | None:
    """How this process can run apt-get as root, or None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def install(packages: list[str]) -> bool:
    prefix = _installer()
    if prefix is None:
        return False
    print(f"• installing {' '.join(packages)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        if subprocess.run([*prefix, *command], env=env).returncode != 0:
            return False
    return True


def report(results: list[Check]) -> None:
    for check in results:
        mark = "ok     " if check.ok else "MISSING"
        where = check.path or f"install package {check.package}"
        print(f"  {mark} {check.name:<11} for {check.why:<26} {where}", flush=True)


def doctor(settings: Settings, *, install_missing: bool, for_tests: bool = False) -> bool:
    """Print each check; with `install_missing`, install what is missing where this host can.
    True when nothing is missing in the end."""
    results = checks(settings, for_tests=for_tests)
    report(results)
    packages = sorted({check.package for check in results if not check.ok})
    if not packages:
        return True
    if install_missing and install(packages):
        results = checks(settings, for_tests=for_tests)
        report(results)
        packages = sorted({check.package for check in results if not check.ok})
        if not packages:
            return True
    print(
        "Missing host tools. Install them, then run this again:\n"
        f"  sudo apt-get update && sudo apt-get install -y {' '.join(packages)}",
        file=sys.stderr,
        flush=True,
    )
    return False
