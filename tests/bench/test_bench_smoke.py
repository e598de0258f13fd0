"""`python -m bench --smoke`: the whole bench, tiny sizes, on its own embedded stack."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.cli import REQUIRED_KEYS
from settings import PROJECT_ROOT


def test_smoke_run_prints_every_figure_and_stores_callbacks_exactly_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in REQUIRED_KEYS:
        assert figures[key] is not None, key
    assert figures["callback_lost"] == 0
    assert figures["callback_duplicated"] == 0
    assert figures["read_rows_mismatch"] == 0
    assert figures["seq_scans"] == 0
    assert "orchestration" in done.stdout  # the table
