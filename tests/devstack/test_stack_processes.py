"""`make dev` runs the API as `api_processes` processes on its one port: what the API child is
told, and where their metrics live (the real processes: tests/api/test_server_processes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cli
from devstack.stack import MULTIPROC_DIR, process_environments
from settings import Settings, usable_cores

DATABASE_URL = "postgresql+asyncpg://postgres@/provisio?host=/tmp/nowhere"


def test_several_api_processes_keep_their_metrics_under_var(tmp_path: Path) -> None:
    # Exported for something else: neither child may write its metrics there.
    base = {"PATH": "/usr/bin", MULTIPROC_DIR: "/tmp/someone-elses"}
    envs = process_environments(Settings(data_dir=tmp_path, api_processes=2), DATABASE_URL, base)
    api, worker = envs["api"], envs["worker"]
    assert api["PROVISIO_API_PROCESSES"] == "2"
    assert api[MULTIPROC_DIR] == str(tmp_path / "api-metrics")
    assert MULTIPROC_DIR not in worker and "PROVISIO_API_PROCESSES" not in worker


def test_one_api_process_serves_as_before(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", MULTIPROC_DIR: "/tmp/someone-elses"}
    envs = process_environments(Settings(data_dir=tmp_path, api_processes=1), DATABASE_URL, base)
    assert envs["api"]["PROVISIO_API_PROCESSES"] == "1"
    assert MULTIPROC_DIR not in envs["api"]


def test_one_process_per_core_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIO_API_PROCESSES", raising=False)
    assert Settings().api_processes == usable_cores() >= 1
    for auto in ("", "auto"):
        monkeypatch.setenv("PROVISIO_API_PROCESSES", auto)
        assert Settings().api_processes == usable_cores()
    monkeypatch.setenv("PROVISIO_API_PROCESSES", "3")
    assert Settings().api_processes == 3
    monkeypatch.setenv("PROVISIO_API_PROCESSES", "0")
    with pytest.raises(ValueError):
        Settings()


def test_the_commands_refuse_no_processes() -> None:
    for argv in (["api", "--processes", "0"], ["dev", "--api-processes", "-1"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
