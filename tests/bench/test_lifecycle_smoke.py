"""The lifecycle scenario at smoke size, on its own embedded stack with the local runner and real
playbooks: every figure is measured, and nothing of it is left behind."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from bench.config import BenchConfig
from bench.context import BenchContext
from bench.scenarios import lifecycle
from pipeline.local_runner import RUN_MARK

TIMINGS = (
    "lifecycle_cancel_no_process_p50_ms",
    "lifecycle_cancel_no_process_p99_ms",
    "lifecycle_cancel_status_p99_ms",
    "lifecycle_bare_kill_p99_ms",
    "lifecycle_destroy_p50_ms",
    "lifecycle_destroy_p99_ms",
    "lifecycle_bare_teardown_p50_ms",
    "lifecycle_bare_teardown_p99_ms",
    "lifecycle_destroy_ratio",
    "lifecycle_cancel_ratio",
    "lifecycle_destroy_play_p50_ms",
    "lifecycle_cancel_to_runner_p50_ms",
)


def _processes_of_lifecycle_runs() -> list[int]:
    """Processes carrying the run mark of a lifecycle stack's run (or of a bare run in it)."""
    mark = os.fsencode(f"{RUN_MARK}={Path(tempfile.gettempdir()) / 'provisio-lifecycle-'}")
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if any(entry.startswith(mark) for entry in environ.read_bytes().split(b"\0")):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


async def test_a_smoke_run_measures_every_figure_and_leaves_nothing_behind() -> None:
    ctx = cast(BenchContext, SimpleNamespace(config=BenchConfig.smoke()))

    figures = await lifecycle.run(ctx)

    assert figures["lifecycle_samples"] == 2
    for key in TIMINGS:
        assert math.isfinite(figures[key]) and figures[key] > 0, (key, figures)
    # The cancels caught their runs running, and the bare runs ended on SIGTERM.
    assert figures["lifecycle_cancel_none_running"] == 0, figures
    assert figures["lifecycle_bare_kill_sigkilled"] == 0, figures
    # Every deployment ended with nothing left of it: two destroyed, two (or more) cancelled.
    assert figures["lifecycle_statuses"].get("destroyed", 0) >= 2, figures
    assert figures["lifecycle_statuses"].get("cancelled", 0) == 2, figures
    assert set(figures["lifecycle_statuses"]) <= {"destroyed", "cancelled"}, figures
    assert figures["lifecycle_not_final"] == 0, figures
    assert figures["lifecycle_run_processes_left"] == 0, figures
    assert figures["lifecycle_image_files_left"] == 0, figures
    assert figures["lifecycle_history_rows_duplicated"] == 0, figures
    # And once it returned: its stack (runs, sandbox, data) is gone, and so is every process.
    assert figures["lifecycle_stack_dir_left"] == 0, figures
    assert _processes_of_lifecycle_runs() == []
