"""The chaos run, small: 4 deployments (one cancelled, one destroyed) on the real embedded stack
while the worker is SIGKILLed once and PostgreSQL and Temporal restart once each."""

from __future__ import annotations

import json
import subprocess
import sys

from settings import PROJECT_ROOT


def test_small_chaos_run_leaves_nothing_stuck_duplicated_or_leaked() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--deployments=4",
            "--worker-kills=1",
            "--concurrency=4",
            "--gap-min-s=2",
            "--gap-max-s=8",
            "--cancel-window-s=10",
            "--settle-timeout-s=180",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    context = json.dumps(figures, indent=1) + done.stderr[-2000:]

    assert figures["deployments_launched"] == 4, context
    assert figures["final"] == 4, context
    assert figures["stuck"] == 0, context
    assert figures["history_rows_duplicated"] == 0, context
    assert figures["runs_started_twice"] == 0, context
    assert figures["leaked_image_files"] == 0, context
    assert figures["run_processes_left"] == 0, context
    # Every fault struck, and the stack answered and moved on after each.
    kinds = sorted(record["kind"] for record in figures["recoveries"])
    assert kinds == ["postgres_restart", "temporal_restart", "worker_kill"], context
    assert figures["faults_not_recovered"] == [], context
    assert all(record["answer_s"] is not None for record in figures["recoveries"]), context
    # The counts saw something to count: runs with their ansible-runner record, image files of
    # the deployments that keep them, and a cancel or destroy whose files had to go.
    assert figures["runs_on_disk"] >= 4, context
    assert figures["playbook_starts"] >= 3, context
    assert figures["image_files_of_settled_deployments"] > 0, context
    assert figures["statuses"].get("cancelled", 0) + figures["statuses"].get("destroyed", 0) >= 2
    assert figures["held"] is True and done.returncode == 0, context
