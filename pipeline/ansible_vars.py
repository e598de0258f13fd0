"""The only way user data reaches Ansible: a vars file in which every user string is `!unsafe`.

`check_variables` rejects what must never reach a playbook (unknown top-level keys, `ansible_*`
keys at any depth, non-string keys, types YAML would not round-trip); `write_vars_file` writes the
file passed to `ansible-playbook -e @file`. Every string of the user's variables, mapping keys
included, is tagged `!unsafe`, so Ansible never templates it: a deployment called
"{{ lookup('pipe', 'id') }}" stays that literal text. The runner's own variables (backend, sandbox
root, ...) are written plainly.

Standard library and PyYAML only: a Jenkins agent runs this file as a script too:

    python pipeline/ansible_vars.py variables.json vars.yml \\
        --runner-var provisio_disk_backend=lvm --runner-var-json provisio_pvs='["/dev/sdb"]'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ALLOWED_TOP_LEVEL_KEYS = frozenset({"provisio_deployment", "provisio_disks"})
REQUIRED_TOP_LEVEL_KEYS = frozenset({"provisio_deployment"})
RESERVED_KEY_PREFIX = "ansible_"
RUNNER_VAR_PREFIX = "provisio_"
MAX_DEPTH = 32


class UnsafeVariablesError(ValueError):
    """The variables cannot go to Ansible; `field` says where ("provisio_disks[0].size_gb")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_string(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeVariablesError(path, "not valid UTF-8 text") from exc


def _check_value(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise UnsafeVariablesError(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeVariablesError(path, f"keys must be strings, not {type(key).__name__}")
            _check_string(key, _child(path, key))
            if key.lower().startswith(RESERVED_KEY_PREFIX):
                raise UnsafeVariablesError(
                    _child(path, key), f"keys starting with {RESERVED_KEY_PREFIX!r} are not allowed"
                )
            _check_value(item, _child(path, key), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        _check_string(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeVariablesError(path, "numbers must be finite")
    elif value is None or isinstance(value, bool | int):
        pass
    else:
        raise UnsafeVariablesError(path, f"unsupported type {type(value).__name__}")


def check_variables(variables: dict[str, Any]) -> None:
    """Raise UnsafeVariablesError unless `variables` may be handed to the playbook."""
    if not isinstance(variables, Mapping):
        raise UnsafeVariablesError("", "variables must be a mapping")
    for key in variables:
        if not isinstance(key, str):
            raise UnsafeVariablesError("", f"keys must be strings, not {type(key).__name__}")
        if key not in ALLOWED_TOP_LEVEL_KEYS:
            raise UnsafeVariablesError(
                key, f"unknown top-level key; allowed: {', '.join(sorted(ALLOWED_TOP_LEVEL_KEYS))}"
            )
    missing = sorted(REQUIRED_TOP_LEVEL_KEYS - variables.keys())
    if missing:
        raise UnsafeVariablesError(missing[0], "missing")
    _check_value(variables, "", 0)


class _UnsafeText(str):
    """A user string: dumped with the !unsafe tag."""


class _VarsDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no anchors: every value spelled out where it is used


_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()  # the implicit resolver Ansible's YAML loader uses too
_TEMPLATE_CHARACTERS = frozenset("{}%#")


def _represent_unsafe(dumper: yaml.SafeDumper, value: _UnsafeText) -> yaml.ScalarNode:
    text = str(value)
    if _RESOLVER.resolve(
        yaml.ScalarNode, text, (True, False)
    ) != _STR_TAG and not _TEMPLATE_CHARACTERS.intersection(text):
        # ansible-core 2.19 re-resolves the type of an !unsafe scalar, so `!unsafe "7"` would load
        # as the integer 7 (and "true", "null", "" as a bool and None). Text that YAML reads as a
        # number, boolean, null or date literal cannot hold a template delimiter, so there is
        # nothing to protect: it goes quoted and untagged, and stays a string.
        return dumper.represent_scalar(_STR_TAG, text, style='"')
    # Quoted, so that the text survives whatever characters it holds; the tag makes it a string
    # Ansible never templates.
    return dumper.represent_scalar("!unsafe", text, style='"')


_VarsDumper.add_representer(_UnsafeText, _represent_unsafe)


def _tag_strings(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_UnsafeText(key): _tag_strings(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag_strings(item) for item in value]
    if isinstance(value, str):
        return _UnsafeText(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def render_vars(variables: dict[str, Any], runner_vars: dict[str, Any]) -> str:
    """The vars file's text (see `write_vars_file`)."""
    check_variables(variables)
    for key in runner_vars:
        if not isinstance(key, str) or not key.startswith(RUNNER_VAR_PREFIX):
            raise ValueError(f"runner variable {key!r} must start with {RUNNER_VAR_PREFIX!r}")
        if key in ALLOWED_TOP_LEVEL_KEYS:
            raise ValueError(f"runner variable {key!r} would replace user data")
    document: dict[str, Any] = {key: _plain(value) for key, value in runner_vars.items()}
    document.update({_UnsafeText(key): _tag_strings(value) for key, value in variables.items()})
    header = (
        "# Written by pipeline/ansible_vars.py. Ansible never templates the user's data: its\n"
        '# strings are !unsafe (literals such as "7" are quoted instead, to stay strings).\n'
    )
    return header + yaml.dump(
        document,
        Dumper=_VarsDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1_000_000,
    )


def write_vars_file(path: Path, variables: dict[str, Any], runner_vars: dict[str, Any]) -> None:
    """Write the vars file for `ansible-playbook -e @path`, mode 0600, atomically."""
    text = render_vars(variables, runner_vars)
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a Provisio vars file for ansible-playbook.")
    parser.add_argument("variables", help="JSON file with the deployment's variables ('-': stdin)")
    parser.add_argument("output", type=Path, help="vars file to write (mode 0600)")
    parser.add_argument(
        "--runner-var", action="append", default=[], metavar="KEY=VALUE", help="a string"
    )
    parser.add_argument(
        "--runner-var-json", action="append", default=[], metavar="KEY=JSON", help="any JSON value"
    )
    args = parser.parse_args(argv)
    if args.variables == "-":
        variables = json.load(sys.stdin)
    else:
        with open(args.variables, encoding="utf-8") as handle:
            variables = json.load(handle)
    runner_vars: dict[str, Any] = {}
    for item in args.runner_var:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--runner-var needs KEY=VALUE, got {item!r}")
        runner_vars[key] = value
    for item in args.runner_var_json:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--runner-var-json needs KEY=JSON, got {item!r}")
        runner_vars[key] = json.loads(value)
    try:
        write_vars_file(args.output, variables, runner_vars)
    except (UnsafeVariablesError, ValueError) as exc:
        print(f"refusing the variables: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
