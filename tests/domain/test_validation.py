"""Validation of deployment requests against templates (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.validation import DeploymentValidationError, TemplateSnapshot, validate_deployment
from vocabulary.contracts import DeployRequest
from vocabulary.disks import DiskOverride, DiskSpec


def snapshot(configuration: dict[str, Any], **params: Any) -> TemplateSnapshot:
    return TemplateSnapshot(
        id=1,
        name="pg",
        version=1,
        service_type="postgresql",
        is_active=True,
        configuration=configuration,
        disks=[
            DiskSpec("ssd", 20, "/data/pg", "vg", "lv_pg", "ext4", dict(params)),
            DiskSpec("ssd", 5, "/data/wal", "vg", "lv_wal", "xfs"),
        ],
    )


def request(**change: Any) -> DeployRequest:
    return DeployRequest(
        deployment_id=1, user_id=1, username="u", template_id=1, deployment_name="pg-one", **change
    )


def locs(template: TemplateSnapshot, req: DeployRequest) -> list[list[Any]]:
    with pytest.raises(DeploymentValidationError) as refused:
        validate_deployment(template, req)
    return [error["loc"] for error in refused.value.errors]


DECLARED = {
    "max_connections": 100,
    "log_level": "info",
    "provisio": {
        "overrides": {
            "max_connections": {"type": "integer", "minimum": 10, "maximum": 500},
            "log_level": {"enum": ["debug", "info", "warning"]},
        },
        "max_total_gb": 100,
    },
}


def test_declared_overrides_are_the_only_keys_and_hold_their_bounds() -> None:
    template = snapshot(DECLARED)
    ok = validate_deployment(template, request(configuration={"max_connections": 300}))
    assert ok.configuration == {"max_connections": 300, "log_level": "info"}
    assert locs(template, request(configuration={"max_connections": 501})) == [
        ["body", "configuration", "max_connections"]
    ]
    assert locs(template, request(configuration={"log_level": "trace", "extra": 1})) == [
        ["body", "configuration", "extra"],
        ["body", "configuration", "log_level"],
    ]
    assert locs(template, request(configuration={"max_connections": "10"})) == [
        ["body", "configuration", "max_connections"]
    ]


def test_disk_size_within_template_bounds_and_total_cap() -> None:
    template = snapshot(DECLARED, min_size_gb=10, max_size_gb=80)
    assert locs(template, request(disk_overrides=[DiskOverride("/data/pg", size_gb=9)])) == [
        ["body", "disk_allocations", 0, "size_gb"]
    ]
    assert locs(template, request(disk_overrides=[DiskOverride("/data/pg", size_gb=81)])) == [
        ["body", "disk_allocations", 0, "size_gb"]
    ]
    fine = validate_deployment(template, request(disk_overrides=[DiskOverride("/data/pg", 80)]))
    assert [d.size_gb for d in fine.disks] == [80, 5]
    too_much = request(
        disk_overrides=[DiskOverride("/data/pg", size_gb=80), DiskOverride("/data/wal", 30)]
    )
    assert locs(template, too_much) == [["body", "disk_allocations"]]


def test_without_declared_overrides_default_keys_keep_their_type() -> None:
    template = snapshot({"max_connections": 100, "ratio": 0.5, "on": True})
    ok = validate_deployment(template, request(configuration={"ratio": 1, "on": False}))
    assert ok.configuration["ratio"] == 1
    assert locs(template, request(configuration={"on": 1})) == [["body", "configuration", "on"]]


def test_the_templates_lease_settings_reach_the_validated_deployment() -> None:
    lease = {"lease_s": 3600, "max_lease_s": 7200, "lease_warnings_s": [600]}
    leased = validate_deployment(snapshot({"provisio": lease}), request())
    assert (leased.lease_s, leased.max_lease_s, leased.lease_warnings_s) == (3600, 7200, [600])
    # Without a maximum the lease cannot grow past its own length; without warnings, defaults.
    plain = validate_deployment(snapshot({"provisio": {"lease_s": 3600}}), request())
    assert (plain.lease_s, plain.max_lease_s, plain.lease_warnings_s) == (3600, 3600, None)
    none = validate_deployment(snapshot({}), request())
    assert (none.lease_s, none.max_lease_s, none.lease_warnings_s) == (None, None, None)
