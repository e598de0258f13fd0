"""The callback wire contract: the events the callback plugin sends and what the API keeps of them.

Both ends read this one file. The API imports it; the plugin
(`playbooks/callback_plugins/provisio_callback.py`) runs inside ansible-playbook, where the project
is not installed, and loads it by its path in the same checkout. Hence: standard library only,
nothing imported from the project, no I/O, and Python as old as an agent's ansible-core runs on.

An event is an object with EVENT_KEYS: a per-run `counter` (1, 2, ...), the `event` name, the
EVENT_TEXT_KEYS and a flat `data` object holding only DATA_KEYS. STRUCTURED_DATA_KEYS are
kept as sent (numbers, booleans, the stats mapping) when `structured_value_problem` finds them
within bounds, and refused otherwise; every other value is text of at most MAX_TEXT_CHARS
characters, cut by `bound_text` on both ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# -- event names, in the order a run sends them --------------------------------------------------
PLAYBOOK_ON_START = "playbook_on_start"
PLAY_START = "playbook_on_play_start"
TASK_START = "playbook_on_task_start"
RUNNER_ON_OK = "runner_on_ok"
RUNNER_ON_FAILED = "runner_on_failed"
RUNNER_ON_SKIPPED = "runner_on_skipped"
RUNNER_ON_UNREACHABLE = "runner_on_unreachable"
PLAYBOOK_ON_STATS = "playbook_on_stats"  # the end of the run
EVENT_NAMES = (
    PLAYBOOK_ON_START,
    PLAY_START,
    TASK_START,
    RUNNER_ON_OK,
    RUNNER_ON_FAILED,
    RUNNER_ON_SKIPPED,
    RUNNER_ON_UNREACHABLE,
    PLAYBOOK_ON_STATS,
)
# A host's result for a task, and the word that names it.
RESULT_OUTCOMES = {
    RUNNER_ON_OK: "ok",
    RUNNER_ON_FAILED: "failed",
    RUNNER_ON_SKIPPED: "skipped",
    RUNNER_ON_UNREACHABLE: "unreachable",
}
FAILING_EVENTS = (RUNNER_ON_FAILED, RUNNER_ON_UNREACHABLE)

# -- an event's keys -----------------------------------------------------------------------------
EVENT_TEXT_KEYS = ("uuid", "host", "task", "timestamp")
EVENT_KEYS = ("counter", "event", *EVENT_TEXT_KEYS, "data")
STRUCTURED_DATA_KEYS = frozenset(
    {
        "changed",
        "failed",
        "skipped",
        "unreachable",
        "ignore_errors",  # a failure the playbook chose to ignore
        "handler",  # a task start that is a handler's
        "rc",
        "stats",  # playbook_on_stats: {host: {HOST_STATS_KEYS...}}
        "total_events",  # playbook_on_stats: events of the run, this one included
    }
)
TEXT_DATA_KEYS = frozenset(
    {
        "msg",
        "stderr",  # failed and unreachable results only
        "skip_reason",
        "censored",  # set instead of msg/stderr/rc when the task is no_log
        "action",
        "task_uuid",
        "play",
        "playbook",
    }
)
DATA_KEYS = STRUCTURED_DATA_KEYS | TEXT_DATA_KEYS
# What a no_log result says instead of its output (Ansible's own wording).
CENSORED = (
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
)

# -- per-host totals of playbook_on_stats --------------------------------------------------------
HOST_STATS_KEYS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")
HOST_FAILURE_KEYS = ("failures", "unreachable")

# -- sizes ---------------------------------------------------------------------------------------
MAX_TEXT_CHARS = 2000  # per text value
MAX_REASON_MSG_CHARS = 500  # of a task's msg in a failure reason
MAX_EVENTS_PER_BATCH = 1000  # per request
MAX_BODY_BYTES = 4 * 1024 * 1024  # per request; the plugin splits a batch that would be larger
_TRIM_MARK = " …[{} characters trimmed]… "
# Numbers: what a PostgreSQL bigint holds. A counter or a stats count is at least 0; an rc may be
# negative (a signal). Beyond these a value is refused, never stored or signalled.
MAX_COUNTER = 2**63 - 1
MIN_NUMBER, MAX_NUMBER = -(2**63), 2**63 - 1
# The stats mapping travels in the workflow's `pipeline_finished` signal, so it stays far below
# Temporal's payload limit (2 MB): 1,000 hosts of 7 counts are about 150 kB.
MAX_STATS_HOSTS = 1000
MAX_HOST_CHARS = 255  # a host name (DNS allows 253)


NUL, REPLACEMENT_CHARACTER = "\x00", "\ufffd"


def bound_text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """`value` as text of at most `limit` characters. A longer text keeps its start and its end
    (a command's error is often its last line) around a mark saying how much was cut. Text that
    already fits comes back unchanged, so bounding twice changes nothing. A NUL character (a
    command's binary output) becomes U+FFFD: PostgreSQL's text and jsonb refuse NUL."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if NUL in text:
        text = text.replace(NUL, REPLACEMENT_CHARACTER)
    if len(text) <= limit:
        return text
    widest_mark = len(_TRIM_MARK.format(len(text)))
    if limit < widest_mark:
        return text[:limit]
    kept = limit - widest_mark
    tail = kept // 2
    return text[: kept - tail] + _TRIM_MARK.format(len(text) - kept) + text[len(text) - tail :]


def failure_sentence(event: str, task: Any, host: Any, msg: Any = None) -> str:
    """Why a run failed, as every runner reports it: "task 'X' failed on host: msg"."""
    outcome = RESULT_OUTCOMES.get(event, RESULT_OUTCOMES[RUNNER_ON_FAILED])
    sentence = f"task {task!r} {outcome} on {host}"
    return f"{sentence}: {bound_text(msg, MAX_REASON_MSG_CHARS)}" if msg else sentence


def stats_ok(stats: Mapping[str, Any]) -> bool:
    """No host of the final stats failed or was unreachable."""
    return not any(
        host.get(key)
        for host in stats.values()
        if isinstance(host, Mapping)
        for key in HOST_FAILURE_KEYS
    )


def structured_value_problem(key: str, value: Any) -> str | None:
    """Why the value of a STRUCTURED_DATA_KEYS key is outside the contract, or None if it is
    within it. `stats`: null, or at most MAX_STATS_HOSTS hosts, each named in at most
    MAX_HOST_CHARS characters, each an object of HOST_STATS_KEYS counts from 0 to MAX_COUNTER.
    Every other key: null, a boolean, or an integer from MIN_NUMBER to MAX_NUMBER."""
    if value is None:
        return None
    if key == "stats":
        return _stats_problem(value)
    if isinstance(value, bool) or (isinstance(value, int) and MIN_NUMBER <= value <= MAX_NUMBER):
        return None
    return "must be null, a boolean or an integer within 64 bits"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER


def _stats_problem(stats: Any) -> str | None:
    if not isinstance(stats, Mapping):
        return "must be an object of hosts"
    if len(stats) > MAX_STATS_HOSTS:
        return f"at most {MAX_STATS_HOSTS} hosts"
    counts = ", ".join(HOST_STATS_KEYS)
    for host, totals in stats.items():
        if not isinstance(host, str) or not 1 <= len(host) <= MAX_HOST_CHARS or NUL in host:
            return f"host names of 1 to {MAX_HOST_CHARS} characters, no NUL"
        if not isinstance(totals, Mapping) or not set(totals) <= set(HOST_STATS_KEYS):
            return f"each host an object of {counts} only"
        if not all(_is_count(count) for count in totals.values()):
            return f"counts from 0 to {MAX_COUNTER}"
    return None
