"""A template's orchestration settings: integers within their bounds, booleans refused."""

from __future__ import annotations

import pytest

from domain.template_rules import MAX_FAILURE_RETENTION_S, template_errors
from vocabulary.leases import MAX_LEASE_S


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("failure_retention_s", 0, True),
        ("failure_retention_s", MAX_FAILURE_RETENTION_S, True),
        ("failure_retention_s", MAX_FAILURE_RETENTION_S + 1, False),
        ("failure_retention_s", -1, False),
        ("failure_retention_s", True, False),
        ("failure_retention_s", "3600", False),
        ("callback_timeout_s", 0, False),
        ("callback_timeout_s", 60, True),
        ("max_total_gb", 0, False),
        ("max_total_gb", 10_000, True),
    ],
)
def test_integer_settings_keep_their_bounds(key: str, value: object, ok: bool) -> None:
    errors = template_errors({"provisio": {key: value}}, [])
    assert (errors == []) is ok, errors
    if not ok:
        assert errors[0]["loc"] == ["body", "configuration", "provisio", key]


DAY = 86400


@pytest.mark.parametrize(
    ("settings", "ok", "field"),
    [
        ({"lease_s": 30 * DAY}, True, None),
        ({"lease_s": 30 * DAY, "max_lease_s": 90 * DAY}, True, None),
        ({"lease_s": 0}, False, "lease_s"),
        ({"lease_s": MAX_LEASE_S + 1}, False, "lease_s"),
        ({"lease_s": True}, False, "lease_s"),
        ({"max_lease_s": 90 * DAY}, False, "max_lease_s"),  # nothing to extend
        ({"lease_s": 90 * DAY, "max_lease_s": 30 * DAY}, False, "lease_s"),
        ({"lease_s": DAY, "lease_warnings_s": [3600, 600]}, True, None),
        ({"lease_s": DAY, "lease_warnings_s": []}, True, None),
        ({"lease_s": DAY, "lease_warnings_s": [3600, 3600]}, False, "lease_warnings_s"),
        ({"lease_s": DAY, "lease_warnings_s": [0]}, False, "lease_warnings_s"),
        ({"lease_s": DAY, "lease_warnings_s": 3600}, False, "lease_warnings_s"),
        ({"lease_s": DAY, "lease_warnings_s": ["3600"]}, False, "lease_warnings_s"),
        ({"lease_s": DAY, "lease_warnings_s": list(range(1, 10))}, False, "lease_warnings_s"),
    ],
)
def test_lease_settings(settings: dict[str, object], ok: bool, field: str | None) -> None:
    errors = template_errors({"provisio": settings}, [])
    assert (errors == []) is ok, errors
    if field is not None:
        assert [e["loc"] for e in errors] == [["body", "configuration", "provisio", field]]
