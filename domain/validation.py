"""Validation of a deployment request against its template.

Used twice: by the API before it starts anything (so bad input leaves no workflow behind), and by
the workflow's validate step, which is authoritative because the template may change in between.
Errors have FastAPI's shape, `{"loc": [...], "msg": ..., "type": ...}`: the API returns them as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from domain.disk_rules import FILESYSTEMS, MAX_DISK_GB, MAX_TOTAL_GB, filesystem_error, size_error
from vocabulary.configuration import declared_secrets, is_secret
from vocabulary.contracts import ValidatedDeployment
from vocabulary.disks import DiskOverride, DiskResize, DiskSpec, resize_errors, resized

__all__ = [
    "FILESYSTEMS",
    "MAX_DISK_GB",
    "DeploymentValidationError",
    "validate_configuration_change",
    "validate_deployment",
    "validate_resize",
]

MAX_STRING_VALUE = 1024
DEPLOYMENT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Template configuration keeps orchestration settings under this key; deployments cannot set it.
RESERVED_KEY = "provisio"

FieldError = dict[str, Any]


class DeploymentValidationError(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class DeploymentAsk(Protocol):
    """What a launch asks of a template (the API's request body, the workflow's DeployRequest)."""

    @property
    def deployment_name(self) -> str: ...
    @property
    def configuration(self) -> dict[str, Any]: ...
    @property
    def disk_overrides(self) -> list[DiskOverride]: ...


@dataclass
class TemplateSnapshot:
    id: int
    name: str
    version: int
    service_type: str
    is_active: bool
    configuration: dict[str, Any]
    disks: list[DiskSpec] = field(default_factory=list)


def _error(loc: list[str | int], msg: str, kind: str) -> FieldError:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _json_type(value: Any) -> str:
    # bool before int: True is an int in Python but not in JSON.
    for kind, types in (("boolean", bool), ("integer", int), ("number", float), ("string", str)):
        if isinstance(value, types):
            return kind
    return "object"


def _orchestration(configuration: dict[str, Any]) -> dict[str, Any]:
    settings = configuration.get(RESERVED_KEY)
    return settings if isinstance(settings, dict) else {}


def _check_declared(schema: dict[str, Any], overrides: dict[str, Any]) -> list[FieldError]:
    """Overrides against the JSON Schema properties the template declares."""
    validator = Draft202012Validator(
        {"type": "object", "properties": schema, "additionalProperties": False}
    )
    secrets = declared_secrets(schema)
    errors = []
    for error in sorted(validator.iter_errors(overrides), key=lambda e: list(e.absolute_path)):
        if error.validator == "additionalProperties":
            for key in sorted(set(overrides) - set(schema)):
                msg = "this template does not allow setting this key"
                errors.append(_error(["configuration", key], msg, "key"))
        else:
            loc = ["configuration", *error.absolute_path]
            key = str(error.absolute_path[0]) if error.absolute_path else ""
            # jsonschema's message repeats the value: never a secret's.
            msg = (
                f"does not satisfy the template's {error.validator} for this secret value"
                if key and is_secret(key, secrets)
                else error.message[:300]
            )
            errors.append(_error(loc, msg, str(error.validator)))
    return errors


def _check_configuration(
    defaults: dict[str, Any], overrides: dict[str, Any], declared: Any
) -> list[FieldError]:
    """Declared overrides (`provisio.overrides`, JSON Schema per key) when the template has them;
    otherwise any default key, with the default's JSON type."""
    if isinstance(declared, dict):
        return _check_declared(declared, overrides)
    errors = []
    for key, value in overrides.items():
        loc: list[str | int] = ["configuration", key]
        if key == RESERVED_KEY or key not in defaults:
            errors.append(_error(loc, "this template does not allow setting this key", "key"))
            continue
        expected, actual = _json_type(defaults[key]), _json_type(value)
        if expected != actual and not (expected == "number" and actual == "integer"):
            errors.append(_error(loc, f"must be of type {expected}", "type"))
        elif isinstance(value, str) and len(value) > MAX_STRING_VALUE:
            errors.append(_error(loc, f"must be at most {MAX_STRING_VALUE} characters", "length"))
    return errors


def _callback_timeout(configuration: dict[str, Any]) -> int | None:
    timeout = _orchestration(configuration).get("callback_timeout_s")
    return timeout if isinstance(timeout, int) and timeout > 0 else None


def _failure_retention(configuration: dict[str, Any]) -> int | None:
    retention = _orchestration(configuration).get("failure_retention_s")
    valid = isinstance(retention, int) and not isinstance(retention, bool) and retention >= 0
    return retention if valid else None


def _approval_timeout(orchestration: dict[str, Any]) -> int | None:
    timeout = orchestration.get("approval_timeout_s")
    valid = isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > 0
    return timeout if valid else None


def _lease_settings(configuration: dict[str, Any]) -> dict[str, Any]:
    """The template's lease: its length, its longest extension (the lease itself when unset: no
    extension), and its warnings (None: the defaults). Absent or malformed: no lease."""
    settings = _orchestration(configuration)

    def seconds(value: Any) -> int | None:
        valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return value if valid else None

    lease = seconds(settings.get("lease_s"))
    if lease is None:
        return {}
    warnings = settings.get("lease_warnings_s")
    return {
        "lease_s": lease,
        "max_lease_s": max(lease, seconds(settings.get("max_lease_s")) or lease),
        "lease_warnings_s": (
            [w for w in warnings if seconds(w)] if isinstance(warnings, list) else None
        ),
    }


def _total_errors(disks: list[DiskSpec], orchestration: dict[str, Any]) -> list[FieldError]:
    """The template's cap on a deployment's disks together (`provisio.max_total_gb`)."""
    total = sum(disk.size_gb for disk in disks)
    max_total = orchestration.get("max_total_gb", MAX_TOTAL_GB)
    if total <= max_total:
        return []
    msg = f"the disks add up to {total} GB; this template allows {max_total} GB in all"
    return [_error(["disk_allocations"], msg, "total")]


def validate_resize(
    template: TemplateSnapshot | None, disks: list[DiskSpec], asked: list[DiskResize]
) -> list[DiskSpec]:
    """A resize of a deployment's `disks`: grow only (vocabulary.disks.resize_errors), each size
    within its disk's bounds (`allocation_params`, copied from the template at launch), all of
    them within the cap of the template the deployment was made from, the same rules as at
    launch. The disks with their new sizes, or DeploymentValidationError naming every field."""
    errors = resize_errors(disks, asked)
    if errors:
        raise DeploymentValidationError(errors)
    bounds = {disk.mount_point: disk.allocation_params for disk in disks}
    for index, ask in enumerate(asked):
        if problem := size_error(ask.size_gb, bounds[ask.mount_point]):
            errors.append(_error(["disk_allocations", index, "size_gb"], problem, "range"))
    grown = resized(disks, asked)
    if not errors:
        configuration = template.configuration if template is not None else {}
        errors += _total_errors(grown, _orchestration(configuration))
    if errors:
        raise DeploymentValidationError(errors)
    return grown


def validate_configuration_change(template: TemplateSnapshot | None, asked: dict[str, Any]) -> None:
    """Values a deployment of `template` may take after launch: the same rule as at launch (the
    keys its overrides schema declares, each value valid against it; without a schema, the keys
    of its defaults with their types). DeploymentValidationError naming every field."""
    configuration = template.configuration if template is not None else {}
    defaults = {k: v for k, v in configuration.items() if k != RESERVED_KEY}
    declared = _orchestration(configuration).get("overrides")
    if errors := _check_configuration(defaults, asked, declared):
        raise DeploymentValidationError(errors)


def unmounted_xfs_errors(disks: list[DiskSpec], asked: list[DiskResize]) -> list[FieldError]:
    """Where the directory backend does not mount its image files, an xfs disk cannot grow (xfs
    grows only mounted; the disk role refuses it on the host too): refused before anything is
    sent, naming the disk, rather than a run that fails and leaves the deployment failed."""
    filesystems = {disk.mount_point: (disk.filesystem_type, disk.size_gb) for disk in disks}
    errors = []
    for index, ask in enumerate(asked):
        filesystem, size = filesystems[ask.mount_point]
        if filesystem == "xfs" and ask.size_gb > size:
            msg = (
                f"the xfs filesystem of {ask.mount_point} grows only while mounted, and this "
                "service's directory backend does not mount its image files "
                "(PROVISIO_DIRECTORY_MOUNT is false)"
            )
            errors.append(_error(["disk_allocations", index, "size_gb"], msg, "unsupported"))
    return errors


def validate_deployment(
    template: TemplateSnapshot | None, request: DeploymentAsk
) -> ValidatedDeployment:
    """Return the deployment to create, or raise DeploymentValidationError naming every field."""
    if template is None:
        raise DeploymentValidationError(
            [_error(["template_id"], "template does not exist", "not_found")]
        )
    if not template.is_active:
        raise DeploymentValidationError(
            [_error(["template_id"], "template is not active", "inactive")]
        )

    errors: list[FieldError] = []
    if not DEPLOYMENT_NAME.match(request.deployment_name):
        msg = "must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric"
        errors.append(_error(["deployment_name"], msg, "pattern"))

    defaults = {k: v for k, v in template.configuration.items() if k != RESERVED_KEY}
    orchestration = _orchestration(template.configuration)
    errors += _check_configuration(defaults, request.configuration, orchestration.get("overrides"))

    disks = {disk.mount_point: DiskSpec(**vars(disk)) for disk in template.disks}
    seen: set[str] = set()
    for index, override in enumerate(request.disk_overrides):
        loc: list[str | int] = ["disk_allocations", index]
        if override.mount_point in seen:
            errors.append(_error([*loc, "mount_point"], "duplicate mount point", "duplicate"))
            continue
        seen.add(override.mount_point)
        disk = disks.get(override.mount_point)
        if disk is None:
            msg = "matches no disk of this template"
            errors.append(_error([*loc, "mount_point"], msg, "not_found"))
            continue
        if override.size_gb is not None:
            if problem := size_error(override.size_gb, disk.allocation_params):
                errors.append(_error([*loc, "size_gb"], problem, "range"))
            else:
                disk.size_gb = override.size_gb
        if override.filesystem_type is not None:
            if problem := filesystem_error(override.filesystem_type):
                errors.append(_error([*loc, "filesystem_type"], problem, "enum"))
            else:
                disk.filesystem_type = override.filesystem_type
    if not errors:
        errors += _total_errors(list(disks.values()), orchestration)
    if errors:
        raise DeploymentValidationError(errors)

    return ValidatedDeployment(
        template_id=template.id,
        template_name=template.name,
        template_version=template.version,
        service_type=template.service_type,
        configuration={**defaults, **request.configuration},
        disks=list(disks.values()),
        callback_timeout_s=_callback_timeout(template.configuration),
        failure_retention_s=_failure_retention(template.configuration),
        **_lease_settings(template.configuration),
        secret_keys=declared_secrets(orchestration.get("overrides")),
        requires_approval=orchestration.get("requires_approval") is True,
        approval_timeout_s=_approval_timeout(orchestration),
    )
