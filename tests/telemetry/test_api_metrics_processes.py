"""Several API processes answer /metrics for all of them through prometheus_client's
multiprocess mode: real processes write their metrics, one registry reads them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from telemetry.api_metrics import REGISTRY, current_registry

REPO = Path(__file__).resolve().parents[2]

API_PROCESS = """
import os
from telemetry.api_metrics import CALLBACK_EVENTS_STORED, DEPLOYMENTS, EVENT_STREAMS_OPEN
CALLBACK_EVENTS_STORED.inc({stored})
EVENT_STREAMS_OPEN.inc({streams})
DEPLOYMENTS.labels("queued").set({queued})
print(os.getpid())
"""


def run_api_process(directory: Path, stored: int, streams: int, queued: int) -> int:
    """A process that records metrics as an API process would, then exits; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    code = API_PROCESS.format(stored=stored, streams=streams, queued=queued)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    return int(done.stdout)


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_scrape_answers_for_every_api_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert current_registry() is REGISTRY  # one process: its own registry
    first = run_api_process(tmp_path, stored=2, streams=1, queued=3)
    # The first process ended: its open streams are gone, what it counted stays.
    multiprocess.mark_process_dead(first, str(tmp_path))
    run_api_process(tmp_path, stored=5, streams=4, queued=7)

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    found = values(generate_latest(current_registry()).decode())
    assert found[("provisio_callback_events_stored_total", ())] == 7
    assert found[("provisio_event_streams_open", ())] == 4
    assert found[("provisio_deployments", (("status", "queued"),))] == 7
