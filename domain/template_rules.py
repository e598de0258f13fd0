"""What a template may hold. Field errors in FastAPI's shape, like domain/validation.py."""

from __future__ import annotations

from typing import Any, TypeGuard

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from domain.disk_rules import filesystem_error, lvm_name_error, mount_point_error, size_error
from domain.validation import RESERVED_KEY, FieldError
from vocabulary.leases import MAX_LEASE_S, MAX_LEASE_WARNINGS

MAX_CALLBACK_TIMEOUT_S = 7 * 24 * 3600
# An approval waits at most 90 days (the template's `approval_timeout_s`).
MAX_APPROVAL_TIMEOUT_S = 90 * 24 * 3600


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


SETTINGS = (
    "callback_timeout_s",
    "overrides",
    "max_total_gb",
    "failure_retention_s",
    "lease_s",
    "max_lease_s",
    "lease_warnings_s",
    "requires_approval",
    "approval_timeout_s",
)
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
        "lease_s": (1, MAX_LEASE_S, f"must be an integer from 1 to {MAX_LEASE_S} (seconds)"),
        "max_lease_s": (1, MAX_LEASE_S, f"must be an integer from 1 to {MAX_LEASE_S} (seconds)"),
        "approval_timeout_s": (
            1,
            MAX_APPROVAL_TIMEOUT_S,
            f"must be an integer from 1 to {MAX_APPROVAL_TIMEOUT_S} (seconds)",
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
    if "requires_approval" in settings and not isinstance(settings["requires_approval"], bool):
        errors.append(_error([*loc, "requires_approval"], "must be true or false"))
    return errors + _lease(settings, loc)


def _is_seconds(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LEASE_S


def _lease(settings: dict[str, Any], loc: list[str | int]) -> list[FieldError]:
    """What the bounds table cannot say: the maximum needs a lease and holds it, and the
    warnings are a short list of distinct durations."""
    errors = []
    lease, most = settings.get("lease_s"), settings.get("max_lease_s")
    if most is not None and lease is None:
        errors.append(_error([*loc, "max_lease_s"], "needs lease_s: only a lease is extended"))
    elif _is_seconds(lease) and _is_seconds(most) and lease > most:
        errors.append(_error([*loc, "lease_s"], f"must not exceed max_lease_s ({most})"))
    if "lease_warnings_s" in settings:
        warnings = settings["lease_warnings_s"]
        if (
            not isinstance(warnings, list)
            or len(warnings) > MAX_LEASE_WARNINGS
            or not all(_is_seconds(w) for w in warnings)
            or len(set(warnings)) != len(warnings)
        ):
            msg = (
                f"must be a list of at most {MAX_LEASE_WARNINGS} distinct integers from 1 to"
                f" {MAX_LEASE_S} (seconds before the lease ends)"
            )
            errors.append(_error([*loc, "lease_warnings_s"], msg))
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
