"""The callback contract's pure parts: bounding text, the failure sentence, reading the stats."""

from __future__ import annotations

import pytest

from vocabulary.callback_events import (
    DATA_KEYS,
    FAILING_EVENTS,
    MAX_TEXT_CHARS,
    RESULT_OUTCOMES,
    RUNNER_ON_FAILED,
    RUNNER_ON_UNREACHABLE,
    STRUCTURED_DATA_KEYS,
    TEXT_DATA_KEYS,
    bound_text,
    failure_sentence,
    stats_ok,
)


@pytest.mark.parametrize("length", [0, 1, MAX_TEXT_CHARS, MAX_TEXT_CHARS + 1, 10 * MAX_TEXT_CHARS])
def test_bound_text_fits_keeps_both_ends_and_changes_nothing_twice(length: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    bounded = bound_text(text)
    assert len(bounded) <= MAX_TEXT_CHARS
    assert bound_text(bounded) == bounded
    if length <= MAX_TEXT_CHARS:
        assert bounded == text
        return
    head, rest = bounded.split(" …[", 1)
    count, tail = rest.split(" characters trimmed]… ", 1)
    assert text.startswith(head) and text.endswith(tail)
    assert int(count) == length - len(head) - len(tail)
    assert len(head) + len(tail) > MAX_TEXT_CHARS - 40  # the mark takes little room


def test_bound_text_writes_other_values_as_json_and_honours_a_small_limit() -> None:
    assert bound_text({"a": [1, True]}) == '{"a": [1, true]}'
    assert bound_text("x" * 50, 10) == "x" * 10


def test_the_failure_sentence_names_task_outcome_host_and_a_bounded_message() -> None:
    assert failure_sentence(RUNNER_ON_FAILED, "Make filesystem", "web-2", "mkfs: busy") == (
        "task 'Make filesystem' failed on web-2: mkfs: busy"
    )
    assert failure_sentence(RUNNER_ON_UNREACHABLE, "Ping", "db-1") == (
        "task 'Ping' unreachable on db-1"
    )
    long = failure_sentence(RUNNER_ON_FAILED, "T", "h", "m" * 5000)
    assert len(long) < 600


def test_stats_fail_on_any_host_with_failures_or_unreachable() -> None:
    assert stats_ok({"web-1": {"ok": 3, "failures": 0, "unreachable": 0}, "junk": 7})
    assert not stats_ok({"web-1": {"ok": 3}, "web-2": {"failures": 1}})
    assert not stats_ok({"web-1": {"unreachable": 1}})


def test_the_keys_are_either_structured_or_text_and_outcomes_cover_the_failures() -> None:
    assert not STRUCTURED_DATA_KEYS & TEXT_DATA_KEYS
    assert DATA_KEYS == STRUCTURED_DATA_KEYS | TEXT_DATA_KEYS
    assert set(FAILING_EVENTS) <= set(RESULT_OUTCOMES)
