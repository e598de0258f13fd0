"""The lifecycle scenario's own parts: its sizes, and its baselines with real ansible-playbook
runs (the whole scenario, with its stack, is tests/bench/test_lifecycle_smoke.py)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.config import BenchConfig
from bench.scenarios.lifecycle import BarePlaybooks, _event_times, sample_count
from devstack.seed import SAMPLE_TEMPLATES
from pipeline.ansible_vars import write_vars_file
from pipeline.local_runner import RUN_MARK


def test_the_config_s_samples_two_in_a_smoke_run_ten_without_a_config_value() -> None:
    assert sample_count(BenchConfig()) == BenchConfig().lifecycle_samples == 3
    assert sample_count(SimpleNamespace(orchestration_n=200)) == 10
    assert sample_count(BenchConfig.smoke()) == 2
    assert sample_count(SimpleNamespace(lifecycle_samples=4, orchestration_n=200)) == 4
    assert sample_count(SimpleNamespace(lifecycle_samples=5, orchestration_n=6)) == 2
    assert sample_count(SimpleNamespace(lifecycle_samples=5, smoke=True)) == 2
    assert sample_count(SimpleNamespace(lifecycle_samples=5, smoke=False)) == 5


def test_event_times_read_whole_events_only(tmp_path: Path) -> None:
    events = tmp_path / "job_events"
    events.mkdir()
    (events / "1-a.json").write_text(
        '{"event": "playbook_on_start", "created": "2026-01-01T00:00:01+00:00"}'
    )
    (events / "9-b.json").write_text(
        '{"event": "playbook_on_stats", "created": "2026-01-01T00:00:04.5+00:00"}'
    )
    (events / "c-partial.json").write_text('{"event": "playbook_on_stats"}')
    times = _event_times(tmp_path)
    assert times["playbook_on_stats"] - times["playbook_on_start"] == 3.5


@pytest.fixture
def bare(tmp_path: Path) -> BarePlaybooks:
    directory = tmp_path / "bare"
    directory.mkdir()
    return BarePlaybooks(directory)


def _vars_file(path: Path, sandbox_root: Path) -> Path:
    """A vars file like the local runner's for the web-app sample template."""
    spec = next(spec for spec in SAMPLE_TEMPLATES if spec["name"] == "web-app")
    disks = [
        dict(
            disk_type=disk_type,
            size_gb=size,
            mount_point=mount,
            volume_group=vg,
            logical_volume=lv,
            filesystem_type=fs,
            allocation_params={},
        )
        for disk_type, size, mount, vg, lv, fs in spec["disks"]
    ]
    variables = {
        "provisio_deployment": {
            "id": 7,
            "name": "lifecycle",
            "template": spec["name"],
            "service_type": spec["service_type"],
            "configuration": spec["configuration"],
        },
        "provisio_disks": disks,
    }
    runner_vars = {
        "provisio_disk_backend": "directory",
        "provisio_sandbox_root": str(sandbox_root),  # the bare runs replace it
        "provisio_directory_mount": False,
    }
    write_vars_file(path, variables, runner_vars)
    return path


def _marked_processes(directory: Path) -> list[int]:
    """Processes whose run mark points into `directory`."""
    mark = os.fsencode(f"{RUN_MARK}={directory}")
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if any(entry.startswith(mark) for entry in environ.read_bytes().split(b"\0")):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


async def test_a_bare_kill_times_a_running_playbook_until_none_of_it_is_left(
    bare: BarePlaybooks, tmp_path: Path
) -> None:
    vars_file = _vars_file(tmp_path / "vars.yml", tmp_path / "unused")
    gone, group_gone, killed = await bare.kill(vars_file)

    assert 0 < group_gone <= gone
    assert not killed
    assert _marked_processes(bare.directory) == []
    assert bare.processes_left() == 0 and bare.live == []
    assert list(bare.directory.rglob("*.img")) == []
    assert not (tmp_path / "unused").exists()


async def test_a_bare_teardown_removes_a_copy_of_a_bare_deployment(
    bare: BarePlaybooks, tmp_path: Path
) -> None:
    vars_file = _vars_file(tmp_path / "vars.yml", tmp_path / "unused")
    built = bare.directory / "built"
    bare.run("deploy.yml", vars_file, built)
    images = sorted(p.relative_to(built) for p in built.rglob("*.img"))
    assert len(images) == 1

    elapsed = await bare.teardown(vars_file, built)

    assert elapsed > 0
    # The copy went, the deployment it was copied from is untouched.
    assert sorted(p.relative_to(built) for p in built.rglob("*.img")) == images
    assert [p.name for p in bare.directory.iterdir() if p.name.startswith("teardown")] == []
    bare.close()
    assert not bare.directory.exists()
