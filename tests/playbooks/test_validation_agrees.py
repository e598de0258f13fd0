"""Property: every disk allocation the API accepts, the playbook's own assertions accept too.

Hypothesis explores mount points, LVM names, filesystems and sizes around the edges of the rules;
the ones `domain.template_rules` accepts are then run through the disk role's validate tasks in
one real ansible-playbook run (the harness of test_unsafe_vars, every string !unsafe)."""

from __future__ import annotations

import json
import string
import subprocess
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.template_rules import template_errors
from tests.playbooks.support import PLAYBOOKS, ansible_env, deployment
from tests.playbooks.test_unsafe_vars import CASE, HARNESS, _tag_strings, _VarsDumper

SEGMENTS = st.one_of(
    st.sampled_from(["data", "srv", "opt", "var", "lib", "mnt", "etc", "data2", "..", ".", ""]),
    st.text(alphabet=string.ascii_letters + string.digits + "._-@+ \t~", min_size=1, max_size=8),
)
SAFE_SEGMENTS = st.text(
    alphabet=string.ascii_letters + string.digits + "._-@+", min_size=1, max_size=8
)
# Half near the edge of acceptance (an allowed prefix, then anything), half anywhere.
MOUNT_POINTS = st.one_of(
    st.tuples(
        st.sampled_from(["/data", "/srv", "/opt", "/var/lib", "/mnt"]),
        st.lists(st.one_of(SAFE_SEGMENTS, SEGMENTS), min_size=1, max_size=4),
    ).map(lambda prefix_parts: "/".join([prefix_parts[0], *prefix_parts[1]])),
    st.lists(SEGMENTS, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)
LVM_NAMES = st.one_of(
    st.sampled_from(["vg_data", "lv", ".", "..", "-lv", "snapshot", "lv_tmeta", "pvmove0"]),
    st.text(alphabet=string.ascii_letters + string.digits + "+_.-", min_size=1, max_size=70),
    st.text(alphabet=string.ascii_letters + string.digits + "+_.-;$ {}", min_size=0, max_size=70),
)
DISKS = st.fixed_dictionaries(
    {
        "disk_type": st.just("ssd"),
        "size_gb": st.one_of(st.integers(1, 16_384), st.integers(-2, 20_000)),
        "mount_point": MOUNT_POINTS,
        "volume_group": LVM_NAMES,
        "logical_volume": LVM_NAMES,
        "filesystem_type": st.sampled_from(["ext4", "xfs", "btrfs", "EXT4"]),
        "allocation_params": st.just({}),
    }
)


def test_what_the_api_accepts_the_playbook_accepts(tmp_path: Path) -> None:
    accepted: list[dict[str, Any]] = []

    @settings(
        max_examples=600,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(DISKS)
    def collect(disk: dict[str, Any]) -> None:
        if not template_errors({}, [disk]):
            accepted.append(disk)

    collect()
    assert len(accepted) >= 20, "the strategy should reach accepted inputs"

    cases: list[dict[str, Any]] = [
        {
            "label": f"case-{index}",
            "deployment": deployment(7),
            "disks": [disk],
            "backend": "directory",
            "sandbox_root": str(tmp_path / "sandbox"),
            "pvs": [],
        }
        for index, disk in enumerate(accepted[:30])
    ]
    (tmp_path / "cases.yml").write_text(
        yaml.dump({"validation_cases": _tag_strings(cases)}, Dumper=_VarsDumper)
    )
    (tmp_path / "harness.yml").write_text(HARNESS)
    (tmp_path / "case.yml").write_text(CASE)
    run = subprocess.run(
        ["ansible-playbook", "harness.yml", "-e", f"outcome_file={tmp_path / 'out.json'}"],
        cwd=tmp_path,
        env=ansible_env(tmp_path, ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    outcomes = json.loads((tmp_path / "out.json").read_text())
    refused = {
        case["label"]: {"disk": case["disks"][0], "playbook": outcomes.get(case["label"])}
        for case in cases
        if outcomes.get(case["label"]) != "accepted"
    }
    assert refused == {}
