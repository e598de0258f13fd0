"""A template's orchestration settings: integers within their bounds, booleans refused."""

from __future__ import annotations

import pytest

from domain.template_rules import MAX_FAILURE_RETENTION_S, template_errors


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
