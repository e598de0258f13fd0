"""A plan is the deploy playbook in check mode with diff (`--check --diff`), run for real on the
directory backend: it checks the inputs, the host's tools and the image files already there,
says per disk whether a run would create, grow or keep it, and changes nothing: no sandbox for a
new deployment, no byte of an existing one. A shrink is refused by the plan as by the run."""

from __future__ import annotations

from pathlib import Path

from pipeline.ansible_vars import write_vars_file
from tests.playbooks.support import deployment, disk, run_playbook
from tests.playbooks.test_shrink_refused import Sandbox


def plan(sandbox: Sandbox, disks: list[dict[str, object]]) -> tuple[int, list[str], str]:
    """rc, the plan's line per disk, and the output (for messages)."""
    write_vars_file(
        sandbox.vars_file,
        {"provisio_deployment": deployment(sandbox.deployment_id), "provisio_disks": disks},
        {"provisio_disk_backend": "directory", "provisio_sandbox_root": str(sandbox.root)},
    )
    run = run_playbook("deploy.yml", sandbox.vars_file, sandbox.tmp, "--check", "--diff")
    shown = run.tasks.get("disk : Show the plan", {}).get("msg")
    return run.rc, shown.split("; ") if shown else [], run.output


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def test_a_plan_of_a_new_deployment_says_create_and_makes_nothing(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 901, mount=False)
    disks = [
        disk("/srv/data", size_gb=2, volume_group="vg", logical_volume="data"),
        disk("/srv/logs", volume_group="vg", logical_volume="logs", filesystem_type="xfs"),
    ]
    rc, lines, output = plan(sandbox, disks)
    assert rc == 0, output
    assert lines == [
        "/srv/data: create vg/data, 2 GiB ext4",
        "/srv/logs: create vg/logs, 1 GiB xfs",
    ]
    assert not sandbox.root.exists()


def test_a_plan_of_a_change_says_grow_and_keep_and_touches_nothing(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 902, mount=False)
    built = sandbox.deploy(
        [
            disk("/srv/data", volume_group="vg", logical_volume="data"),
            disk("/srv/logs", volume_group="vg", logical_volume="logs"),
        ]
    )
    assert built.rc == 0, built.output
    before = tree(sandbox.root)
    rc, lines, output = plan(
        sandbox,
        [
            disk("/srv/data", size_gb=3, volume_group="vg", logical_volume="data"),
            disk("/srv/logs", volume_group="vg", logical_volume="logs"),
        ],
    )
    assert rc == 0, output
    assert lines == ["/srv/data: grow vg/data, 3 GiB ext4", "/srv/logs: keep vg/logs, 1 GiB ext4"]
    assert tree(sandbox.root) == before

    rc, lines, output = plan(sandbox, [disk("/srv/data", volume_group="vg", logical_volume="none")])
    assert rc == 0 and lines == ["/srv/data: create vg/none, 1 GiB ext4"], output
    assert tree(sandbox.root) == before


def test_a_plan_refuses_a_shrink_like_a_run(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 903, mount=False)
    assert (
        sandbox.deploy([disk("/srv/data", size_gb=2, volume_group="vg", logical_volume="data")]).rc
        == 0
    )
    before = tree(sandbox.root)
    rc, lines, output = plan(sandbox, [disk("/srv/data", volume_group="vg", logical_volume="data")])
    assert rc != 0 and lines == []
    assert "disks are never shrunk" in output
    assert tree(sandbox.root) == before
