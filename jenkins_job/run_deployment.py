#!/usr/bin/env python3
"""Entry point of the provisio-deploy Jenkins job: runs one deployment's playbook.

The action (the job's ACTION parameter) picks the playbook: `deploy` runs playbooks/deploy.yml,
`destroy` playbooks/destroy.yml, `plan` playbooks/deploy.yml in check mode with diff (changing
nothing); anything else is refused before Ansible starts. Reads the
deployment's variables (the job's VARS_JSON parameter, which the Jenkinsfile writes to a
file), refuses unsafe ones, writes them with the runner's own variables into a private vars file in
which every user string is !unsafe, and runs ansible-playbook with the provisio_callback plugin
enabled. The exit code is ansible-playbook's, so the build fails when the playbook does.

Works from a checkout or from the Jenkins image's copy without installing the project: it needs only
the standard library, PyYAML and Ansible. For that reason its defaults come from the environment
here (the same PROVISIO_* names as settings.py) rather than from the Settings class.

    python3 jenkins_job/run_deployment.py --action deploy --run 1 \
        --vars-json "$WORKSPACE/vars.json" --deployment-id 42
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipeline.ansible_vars import (  # noqa: E402  (needs REPO_ROOT on sys.path first)
    UnsafeVariablesError,
    check_variables,
    write_vars_file,
)

PLAYBOOKS = REPO_ROOT / "playbooks"
# The playbook of each action, relative to REPO_ROOT (the only ones this script runs).
ACTION_PLAYBOOKS = {
    "deploy": "playbooks/deploy.yml",
    "destroy": "playbooks/destroy.yml",
    "plan": "playbooks/deploy.yml",
}
# A plan changes nothing: check mode, with each change's diff in its events.
CHECK_MODE_ACTIONS = ("plan",)
DISK_BACKENDS = ("directory", "lvm")
# Exit codes of our own, distinct from ansible-playbook's (1-8, 99, 250): sysexits.h's
# EX_DATAERR for variables we refuse, and the shell's "command not found".
EXIT_BAD_INPUT = 65
EXIT_NO_ANSIBLE = 127


class InputError(Exception):
    """The job was started with input that must not reach Ansible."""


def _env_flag(name: str) -> bool:
    # The spellings pydantic-settings reads as true, so that settings.py agrees.
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--action",
        required=True,
        help=f"the job's ACTION: {' or '.join(ACTION_PLAYBOOKS)} (the playbook it runs)",
    )
    parser.add_argument(
        "--run", default="", help="the job's RUN, the deployment's run number (for the log)"
    )
    parser.add_argument(
        "--vars-json", type=Path, required=True, help="JSON object: the deployment's variables"
    )
    parser.add_argument(
        "--deployment-id",
        default="",
        help="the job's DEPLOYMENT_ID; when given, provisio_deployment.id must match it",
    )
    parser.add_argument(
        "--inventory",
        default=os.environ.get("PROVISIO_ANSIBLE_INVENTORY", "localhost.yml"),
        help="file name in playbooks/inventory/ (env PROVISIO_ANSIBLE_INVENTORY)",
    )
    parser.add_argument(
        "--disk-backend",
        default=os.environ.get("PROVISIO_DISK_BACKEND", "directory"),
        help="directory or lvm (env PROVISIO_DISK_BACKEND)",
    )
    parser.add_argument(
        "--sandbox-root",
        type=Path,
        default=Path(os.environ.get("PROVISIO_SANDBOX_ROOT") or REPO_ROOT / "var" / "sandbox"),
        help="where the directory backend keeps its files (env PROVISIO_SANDBOX_ROOT)",
    )
    parser.add_argument(
        "--directory-mount",
        action="store_true",
        default=_env_flag("PROVISIO_DIRECTORY_MOUNT"),
        help="loop-mount the directory backend's image files (env PROVISIO_DIRECTORY_MOUNT)",
    )
    parser.add_argument(
        "--lvm-pv",
        dest="lvm_pvs",
        action="append",
        default=None,
        help="a physical volume for new volume groups, repeatable (env PROVISIO_LVM_PVS, a JSON"
        " list)",
    )
    args = parser.parse_args(argv)
    # Checked here rather than with argparse `choices`, which does not check defaults from env.
    if args.disk_backend not in DISK_BACKENDS:
        parser.error(f"--disk-backend must be one of {', '.join(DISK_BACKENDS)}")
    if args.lvm_pvs is None:
        try:
            args.lvm_pvs = json.loads(os.environ.get("PROVISIO_LVM_PVS") or "[]")
        except json.JSONDecodeError:
            args.lvm_pvs = None
        pvs = args.lvm_pvs
        if not isinstance(pvs, list) or not all(isinstance(pv, str) for pv in pvs):
            parser.error('PROVISIO_LVM_PVS must be a JSON list of strings, e.g. ["/dev/sdb"]')
    inventory = PLAYBOOKS / "inventory" / args.inventory
    if Path(args.inventory).name != args.inventory or not inventory.is_file():
        parser.error(f"--inventory: no file {args.inventory!r} in {PLAYBOOKS / 'inventory'}")
    return args


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json would silently keep the last of two equal keys: refuse input that means two things.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InputError(f"duplicate key {key!r} in the variables")
        result[key] = value
    return result


def load_variables(path: Path, deployment_id: str) -> dict[str, Any]:
    try:
        variables = json.loads(
            path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the variables from {path}: {exc}") from exc
    try:
        check_variables(variables)
    except UnsafeVariablesError as exc:
        raise InputError(f"unsafe variables: {exc}") from exc
    deployment = variables["provisio_deployment"]
    if not isinstance(deployment, dict):
        raise InputError("provisio_deployment must be an object")
    if deployment_id:
        declared = deployment.get("id")
        if str(declared) != deployment_id:
            raise InputError(
                f"provisio_deployment.id is {declared!r}, the job's DEPLOYMENT_ID {deployment_id!r}"
            )
    return variables


def runner_variables(args: argparse.Namespace) -> dict[str, Any]:
    """Trusted variables set by whoever runs the job, not by the user (see playbooks/deploy.yml).

    The same as the local runner's (pipeline/local_runner.py), so a playbook sees no difference.
    """
    if args.disk_backend == "directory":
        return {
            "provisio_disk_backend": "directory",
            "provisio_sandbox_root": str(args.sandbox_root.resolve()),
            "provisio_directory_mount": args.directory_mount,
        }
    return {"provisio_disk_backend": args.disk_backend, "provisio_pvs": list(args.lvm_pvs)}


def find_ansible_playbook(path_env: str | None) -> str | None:
    # PATH first; else next to this interpreter, for a venv that is not on PATH.
    found = shutil.which("ansible-playbook", path=path_env)
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if os.access(beside, os.X_OK) else None


def ansible_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # ansible.cfg's paths are relative to it; an explicit path also keeps Ansible from
            # picking up an ansible.cfg from the (possibly world-writable) working directory.
            "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
            "ANSIBLE_CALLBACKS_ENABLED": "provisio_callback",
            "ANSIBLE_CALLBACK_PLUGINS": str(PLAYBOOKS / "callback_plugins"),
        }
    )
    return env


def run_playbook(argv: list[str], env: dict[str, str]) -> int:
    """Run ansible-playbook (no shell) and return its exit code, passing on SIGTERM and SIGINT."""
    child = subprocess.Popen(argv, cwd=REPO_ROOT, env=env)

    def forward(signum: int, _frame: object) -> None:
        # An aborted Jenkins build signals us: let Ansible stop its run and report it.
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N


def check_run_number(run: str) -> None:
    if run and not (run.isascii() and run.isdigit() and int(run) >= 1):
        raise InputError(f"the run number must be a positive integer, not {run!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Checked here, not with argparse `choices`: a refusal is this script's input error
        # (exit 65), not a usage error that looks like an Ansible failure (exit 2).
        playbook = ACTION_PLAYBOOKS.get(args.action)
        if playbook is None:
            raise InputError(
                f"unknown action {args.action!r}: {' or '.join(ACTION_PLAYBOOKS)} only"
            )
        check_run_number(args.run)
        variables = load_variables(args.vars_json, args.deployment_id)
    except InputError as exc:
        print(f"run_deployment: refusing to run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    env = ansible_environment()
    ansible_playbook = find_ansible_playbook(env.get("PATH"))
    if ansible_playbook is None:
        print("run_deployment: ansible-playbook not found", file=sys.stderr)
        return EXIT_NO_ANSIBLE
    # The vars file holds user data: a private directory, removed when the run ends.
    with tempfile.TemporaryDirectory(prefix="provisio-vars-") as private_dir:
        vars_file = Path(private_dir) / "vars.yml"
        write_vars_file(vars_file, variables, runner_variables(args))
        command = [
            ansible_playbook,
            "-i",
            f"playbooks/inventory/{args.inventory}",
            playbook,
            "-e",
            f"@{vars_file}",
            *(["--check", "--diff"] if args.action in CHECK_MODE_ACTIONS else []),
        ]
        print(
            f"run_deployment: {args.action} of deployment {args.deployment_id or '?'} (run "
            f"{args.run or '?'}), {playbook}, inventory {args.inventory}, disk backend "
            f"{args.disk_backend}",
            flush=True,
        )
        return run_playbook(command, env)


if __name__ == "__main__":
    sys.exit(main())
