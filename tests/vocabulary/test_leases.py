"""The lease's pure rules: which warnings are still to come, and which extensions are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vocabulary.leases import (
    Lease,
    describe_seconds,
    extension_error,
    extension_refusal,
    pending_warnings,
)
from vocabulary.statuses import DeploymentStatus as S

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR, DAY = 3600, 86400


def test_warnings_already_past_when_the_lease_is_set_are_not_given() -> None:
    assert pending_warnings(NOW + timedelta(days=30), [HOUR, DAY], NOW) == [DAY, HOUR]
    assert pending_warnings(NOW + timedelta(minutes=30), [DAY, HOUR], NOW) == []
    assert pending_warnings(NOW + timedelta(hours=2), [DAY, HOUR, HOUR], NOW) == [HOUR]


def test_an_extension_moves_the_expiry_later_and_within_the_maximum() -> None:
    lease = Lease(NOW + timedelta(days=30), max_s=60 * DAY, warnings_pending=[])
    assert extension_error(lease, NOW, 10 * DAY, None) is None
    assert extension_error(lease, NOW, None, NOW + timedelta(days=60)) is None
    field, why = extension_error(lease, NOW, 31 * DAY, None) or ("", "")
    assert field == "extend_s" and "max_lease_s" in why and "5184000s" in why
    field, why = extension_error(lease, NOW, None, NOW + timedelta(days=1)) or ("", "")
    assert field == "expires_at" and "later" in why


def test_only_a_deployment_that_lives_on_has_its_lease_extended() -> None:
    for status in (S.PENDING, S.QUEUED, S.SUCCEEDED, S.FAILED, S.TIMED_OUT):
        assert extension_refusal(status) is None
    for status in (S.CANCELLING, S.DESTROYING, S.DESTROYED, S.CANCELLED, S.REJECTED):
        assert "a lease cannot be extended" in (extension_refusal(status) or "")


def test_durations_read_as_people_say_them() -> None:
    assert [describe_seconds(s) for s in (DAY, HOUR, 2 * DAY, 90 * 60, 45)] == [
        "24 h",
        "1 h",
        "2 d",
        "90 min",
        "45 s",
    ]
