"""What a template may hold. Field errors in FastAPI's shape, like domain/validation.py."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from domain.disk_rules import filesystem_error, lvm_name_error, mount_point_error, size_error
from domain.validation import RESERVED_KEY, FieldError

MAX_CALLBACK_TIMEOUT_S = 7 * 24 * 3600


def _error(loc: list[str | int], msg: str) -> FieldError:
    return {"loc": ["body", *loc], "msg": msg, "type": "value"}


def _ansible_keys(value: Any, loc: list[str | int]) -> list[FieldError]:
    """Keys Ansible would treat as its own connection or privilege settings."""
    errors = []
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower().startswith("ansible_"):
                errors.append(_error([*loc, key], "keys starting with 'ansible_' are not allowed"))
            errors += _ansible_keys(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += _ansible_keys(item, [*loc, index])
    return errors


SETTINGS = ("callback_timeout_s", "overrides", "max_total_gb", "failure_retention_s")
# A failed deployment keeps what it built for at most this long (90 days) before its teardown.
MAX_FAILURE_RETENTION_S = 90 * 24 * 3600


def _overrides(schema: Any, loc: list[str | int]) -> list[FieldError]:
    """`overrides` maps each key a deployment may set to a JSON Schema for its value."""
    if not isinstance(schema, dict):
        return [_error(loc, "must map configuration keys to JSON Schemas")]
    errors = []
    for key, rule in schema.items():
        try:
            Draft202012Validator.check_schema(rule)
            if not isinstance(rule, dict):
                raise SchemaError("must be an object")
        except SchemaError as exc:
            errors.append(_error([*loc, key], f"not a valid JSON Schema: {exc.message[:200]}"))
    return errors


def _orchestration(settings: Any) -> list[FieldError]:
    loc: list[str | int] = ["configuration", RESERVED_KEY]
    if not isinstance(settings, dict):
        return [_error(loc, "must be an object")]
    errors = [_error([*loc, k], "unknown setting") for k in settings if k not in SETTINGS]
    if "overrides" in settings:
        errors += _overrides(settings["overrides"], [*loc, "overrides"])
    # Integer settings and their bounds (inclusive); a boolean is not an integer here.
    bounds = {
        "max_total_gb": (1, None, "must be a positive integer"),
        "callback_timeout_s": (
            1,
            MAX_CALLBACK_TIMEOUT_S,
            f"must be an integer from 1 to {MAX_CALLBACK_TIMEOUT_S}",
        ),
        "failure_retention_s": (
            0,
            MAX_FAILURE_RETENTION_S,
            f"must be an integer from 0 to {MAX_FAILURE_RETENTION_S} (seconds)",
        ),
    }
    for key, (low, high, msg) in bounds.items():
        value = settings.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            errors.append(_error([*loc, key], msg))
    return errors


def template_errors(configuration: dict[str, Any], disks: list[dict[str, Any]]) -> list[FieldError]:
    errors = _ansible_keys(configuration, ["configuration"])
    if RESERVED_KEY in configuration:
        errors += _orchestration(configuration[RESERVED_KEY])
    mounts: set[str] = set()
    volumes: set[tuple[str, str]] = set()
    for index, disk in enumerate(disks):
        loc: list[str | int] = ["disk_allocations", index]
        checks = {
            "mount_point": mount_point_error(disk["mount_point"]),
            "volume_group": lvm_name_error(disk["volume_group"], logical_volume=False),
            "logical_volume": lvm_name_error(disk["logical_volume"], logical_volume=True),
            "filesystem_type": filesystem_error(disk["filesystem_type"]),
            "size_gb": size_error(disk["size_gb"], disk.get("allocation_params")),
        }
        errors += [_error([*loc, field], msg) for field, msg in checks.items() if msg]
        if disk["mount_point"] in mounts:
            errors.append(_error([*loc, "mount_point"], "duplicate mount point"))
        volume = (disk["volume_group"], disk["logical_volume"])
        if volume in volumes:
            errors.append(_error([*loc, "logical_volume"], "duplicate logical volume"))
        mounts.add(disk["mount_point"])
        volumes.add(volume)
        errors += _ansible_keys(disk.get("allocation_params") or {}, [*loc, "allocation_params"])
    return errors
