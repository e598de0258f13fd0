"""User data never becomes code: the vars file tags every user string !unsafe, ansible_* keys
never get in, and hostile values in names, configuration (keys and values) and mount points are
carried through real playbook runs as plain text. Every attack tries to create a marker file in
a tmp dir; none may exist afterwards. A control run without !unsafe shows the attacks are real."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.ansible_vars import (
    UnsafeVariablesError,
    _tag_strings,
    _VarsDumper,
    check_variables,
    write_vars_file,
)
from pipeline.local_runner import LocalRunner
from pipeline.runner import PipelineRequest
from settings import Settings
from tests.playbooks.callback_receiver import CallbackReceiverDouble
from tests.playbooks.support import (
    PLAYBOOKS,
    ansible_env,
    deployment,
    disk,
    run_ansible,
    wait_final,
)
from vocabulary.runs import RunState, RunStatus


class Attacks:
    """Hostile strings, each of which would create `markers/<label>` if it ever ran."""

    def __init__(self, markers: Path) -> None:
        self.markers = markers
        markers.mkdir()

    def jinja(self, label: str) -> str:
        return "{{ lookup('pipe', 'touch " + str(self.markers / label) + "') }}"

    def jinja_statement(self, label: str) -> str:
        return "{% set x = lookup('pipe', 'touch " + str(self.markers / label) + "') %}x"

    def command_substitution(self, label: str) -> str:
        return f"$(touch {self.markers / label})"

    def backticks(self, label: str) -> str:
        return f"`touch {self.markers / label}`"

    def command_separator(self, label: str) -> str:
        return f"; touch {self.markers / label}"

    def fired(self) -> list[str]:
        return sorted(path.name for path in self.markers.iterdir())


# -- check_variables -------------------------------------------------------------------------------


def valid_variables() -> dict[str, Any]:
    return {"provisio_deployment": deployment(1), "provisio_disks": [disk("/srv/data")]}


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({**valid_variables(), "ansible_connection": "local"}, "ansible_connection"),
        ({**valid_variables(), "provisio_sandbox_root": "/"}, "provisio_sandbox_root"),
        ({**valid_variables(), "hosts": "all"}, "hosts"),
        ({"provisio_disks": []}, "provisio_deployment"),
        (
            {"provisio_deployment": deployment(1, configuration={"ansible_host": "evil"})},
            "provisio_deployment.configuration.ansible_host",
        ),
        (
            {"provisio_deployment": deployment(1, configuration={"a": [{"ANSIBLE_BECOME": 1}]})},
            "provisio_deployment.configuration.a[0].ANSIBLE_BECOME",
        ),
        (
            {
                "provisio_deployment": deployment(1),
                "provisio_disks": [{**disk("/srv"), "allocation_params": {"ansible_x": 1}}],
            },
            "provisio_disks[0].allocation_params.ansible_x",
        ),
        (
            {"provisio_deployment": deployment(1, configuration={1: "integer key"})},
            "provisio_deployment.configuration",
        ),
        (
            {"provisio_deployment": deployment(1, configuration={"k": {1, 2}})},
            "provisio_deployment.configuration.k",
        ),
        (
            {"provisio_deployment": deployment(1, configuration={"k": float("nan")})},
            "provisio_deployment.configuration.k",
        ),
        (
            {"provisio_deployment": deployment(1, name="lone surrogate \ud800")},
            "provisio_deployment.name",
        ),
    ],
)
def test_check_variables_rejects(variables: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsafeVariablesError) as raised:
        check_variables(variables)
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


def test_check_variables_accepts_ordinary_data() -> None:
    variables = valid_variables()
    variables["provisio_deployment"]["configuration"] = {
        "nested": {"list": [1, 2.5, None, True, "text"]},
        "my_ansible_setting": "allowed: the prefix is what is refused",
    }
    check_variables(variables)


# -- write_vars_file -----------------------------------------------------------------------------


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


LITERALS = ["7", "007", "-1", "1.5", "1e3", "0x10", "true", "yes", "off", "null", "~", ""]


def test_every_user_string_stays_a_string_that_ansible_never_templates(tmp_path: Path) -> None:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import is_trusted_as_template

    attacks = Attacks(tmp_path / "markers")
    variables = {
        "provisio_deployment": deployment(
            5,
            name=attacks.jinja("name"),
            configuration={
                attacks.jinja("key"): attacks.command_substitution("value"),
                "multi\nline: [text]": ["- item", "\x00\u2028é", "#jinja2:x", "{# c #}"],
                "literals": LITERALS,
                "7": "a key that looks like a number",
                "number": 42,
                "flags": [True, None, 1.5],
            },
        ),
        "provisio_disks": [disk("/srv/data")],
    }
    path = tmp_path / "vars.yml"
    path.write_text("old")
    path.chmod(0o644)
    write_vars_file(path, variables, {"provisio_sandbox_root": str(tmp_path / "sandbox")})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Loaded the way ansible-playbook loads `-e @file`.
    loaded = DataLoader().load_from_file(str(path), cache="none", trusted_as_template=True)
    user = {k: v for k, v in loaded.items() if k in ("provisio_deployment", "provisio_disks")}
    assert user == variables  # every value round-trips with its type: "7" stays "7"
    assert loaded["provisio_deployment"]["configuration"]["literals"] == LITERALS
    assert all(
        isinstance(s, str) for s in loaded["provisio_deployment"]["configuration"]["literals"]
    )
    strings = list(strings_in(user))
    trusted = [s for s in strings if is_trusted_as_template(s)]
    # Only the bare literals may carry trust, and they hold no template syntax.
    assert set(trusted) <= set(LITERALS), trusted
    assert is_trusted_as_template(loaded["provisio_sandbox_root"])  # the runner's own: plain
    assert attacks.fired() == []


def test_runner_vars_cannot_replace_user_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_vars_file(tmp_path / "v.yml", valid_variables(), {"provisio_disks": []})
    with pytest.raises(ValueError):
        write_vars_file(tmp_path / "v.yml", valid_variables(), {"ansible_become": True})
    assert not (tmp_path / "v.yml").exists()


# -- real runs ------------------------------------------------------------------------------------


@dataclass
class AttackRuns:
    attacks: Attacks
    sandbox: Path
    data: dict[str, Any]
    data_status: RunStatus
    mount_points: list[str]
    mount_status: RunStatus


DATA_ATTACK = 201
MOUNT_ATTACK = 202


@pytest.fixture(scope="module")
def attack_runs(
    tmp_path_factory: pytest.TempPathFactory, receiver: CallbackReceiverDouble
) -> AttackRuns:
    base = tmp_path_factory.mktemp("attacks")
    attacks = Attacks(base / "markers")
    sandbox = base / "sandbox"
    runner = LocalRunner(Settings(runner_dir=base / "runs", sandbox_root=sandbox))
    a = attacks
    data = {
        "provisio_deployment": deployment(
            DATA_ATTACK,
            name=a.jinja("name"),
            template="a=b c=d",
            service_type=a.command_substitution("service_type"),
            configuration={
                a.jinja("config-key"): a.jinja("config-value"),
                a.command_substitution("config-key2"): a.command_separator("config-value2"),
                "a=b c=d": a.backticks("config-value3"),
                "nested": {a.jinja_statement("nested-key"): [a.jinja("nested-item")]},
            },
        ),
        "provisio_disks": [
            {
                **disk("/srv/data", volume_group="vg", logical_volume="lv"),
                "disk_type": a.command_separator("disk_type"),
                "allocation_params": {a.jinja("alloc-key"): a.jinja("alloc-value")},
            }
        ],
    }
    mount_points = [
        "/srv/" + a.jinja("mount-jinja"),
        "/srv/" + a.command_substitution("mount-subst"),
        "/srv/x" + a.command_separator("mount-sep"),
        "/srv/" + a.backticks("mount-backticks"),
        "a=b c=d",
        "/srv/" + a.jinja_statement("mount-statement"),
    ]
    mounts = {
        "provisio_deployment": deployment(MOUNT_ATTACK),
        "provisio_disks": [
            disk(point, logical_volume=f"lv{index}") for index, point in enumerate(mount_points)
        ],
    }
    refs = {}
    for deployment_id, variables in ((DATA_ATTACK, data), (MOUNT_ATTACK, mounts)):
        path = f"/api/deployments/{deployment_id}/callback"
        refs[deployment_id] = runner.trigger(
            PipelineRequest(
                deployment_id=deployment_id,
                workflow_id=f"deploy-{deployment_id}",
                callback_url=receiver.url(path, "t"),
                callback_token="t",
                variables=variables,
            )
        )
    return AttackRuns(
        attacks=attacks,
        sandbox=sandbox,
        data=data,
        data_status=wait_final(runner, refs[DATA_ATTACK]),
        mount_points=mount_points,
        mount_status=wait_final(runner, refs[MOUNT_ATTACK]),
    )


def test_hostile_names_and_configuration_are_carried_as_text(attack_runs: AttackRuns) -> None:
    assert attack_runs.data_status.state is RunState.SUCCEEDED, attack_runs.data_status
    assert attack_runs.attacks.fired() == []
    manifest = json.loads(
        (attack_runs.sandbox / str(DATA_ATTACK) / ".provisio" / "deployment.json").read_text()
    )
    # The playbook saw exactly the text that was sent, keys included.
    assert manifest == {
        "deployment": attack_runs.data["provisio_deployment"],
        "disks": attack_runs.data["provisio_disks"],
    }


def test_hostile_mount_points_are_refused_as_text(attack_runs: AttackRuns) -> None:
    assert attack_runs.mount_status.state is RunState.FAILED
    assert attack_runs.mount_status.reason is not None
    assert "Check each disk's mount point" in attack_runs.mount_status.reason
    assert attack_runs.attacks.fired() == []
    assert not (attack_runs.sandbox / str(MOUNT_ATTACK)).exists()


def test_control_without_unsafe_the_same_attack_runs(tmp_path: Path) -> None:
    """Shows that the attacks above are real: the same name, written without !unsafe, runs."""
    attacks = Attacks(tmp_path / "markers")
    plain = tmp_path / "plain.yml"
    plain.write_text(
        yaml.safe_dump(
            {
                "provisio_deployment": deployment(9, name=attacks.jinja("control")),
                "provisio_disks": [disk("/etc/stop-here")],  # fails validation: nothing made
                "provisio_sandbox_root": str(tmp_path / "sandbox"),
            }
        )
    )
    run_ansible(["ansible-playbook", "deploy.yml", "-e", f"@{plain}"], tmp_path)
    assert attacks.fired() == ["control"]


def test_ansible_keys_never_reach_a_run(tmp_path: Path) -> None:
    runner = LocalRunner(Settings(runner_dir=tmp_path / "runs", sandbox_root=tmp_path / "sbx"))
    variables = valid_variables()
    variables["provisio_deployment"]["configuration"] = {"ansible_python_interpreter": "/bin/sh"}
    with pytest.raises(UnsafeVariablesError) as raised:
        runner.trigger(
            PipelineRequest(
                deployment_id=77,
                workflow_id="deploy-77",
                callback_url="http://127.0.0.1:9/api/deployments/77/callback",
                callback_token="t",
                variables=variables,
            )
        )
    assert raised.value.field == "provisio_deployment.configuration.ansible_python_interpreter"
    assert runner.find_run(77, 1) is None
    # No run directory, and no staging left behind either.
    assert [path for path in (tmp_path / "runs").rglob("*") if not path.is_dir()] == []
    assert list((tmp_path / "runs" / "77").iterdir()) == []


# -- the role's input validation, many cases in one run ------------------------------------------

HARNESS = """
- name: Validation cases
  hosts: all
  gather_facts: false
  vars_files:
    - cases.yml
  tasks:
    - name: Run each case
      ansible.builtin.include_tasks: case.yml
      loop: "{{ validation_cases }}"
      loop_control:
        loop_var: case
        label: "{{ case.label }}"
    - name: Write the outcomes
      ansible.builtin.copy:
        content: "{{ outcomes | default({}) | to_json }}"
        dest: "{{ outcome_file }}"
        mode: "0600"
"""

CASE = """
- name: One case
  block:
    - name: Validate
      ansible.builtin.include_role:
        name: disk
        tasks_from: validate
      vars:
        provisio_deployment: "{{ case.deployment }}"
        provisio_disks: "{{ case.disks }}"
        provisio_disk_backend: "{{ case.backend }}"
        provisio_sandbox_root: "{{ case.sandbox_root }}"
        provisio_pvs: "{{ case.pvs }}"
    - name: Accepted
      ansible.builtin.set_fact:
        outcomes: "{{ outcomes | default({}) | combine({case.label: 'accepted'}) }}"
  rescue:
    - name: Rejected
      ansible.builtin.set_fact:
        outcomes: >-
          {{ outcomes | default({}) | combine({case.label: {
               'task': ansible_failed_task.name,
               'items': ansible_failed_result.results | default([])
                        | selectattr('failed', 'defined') | selectattr('failed')
                        | map(attribute='disk_index') | list}}) }}
"""

MOUNT_TASK = "Check each disk's mount point"
NAMES_TASK = "Check each disk's volume group and logical volume names"
SIZE_TASK = "Check each disk's filesystem and size"
DEPLOYMENT_TASK = "Check the deployment and the backend"
SANDBOX_TASK = "Check the sandbox root (directory backend)"
PVS_TASK = "Check the physical volumes (lvm backend)"
UNIQUE_TASK = "Check that mount points and volumes are not requested twice"


def disk_group(
    task: str, entries: list[tuple[bool, dict[str, Any] | str]]
) -> tuple[dict[str, Any], Any]:
    """One case of many disks: (accepted?, disk) pairs; the task must reject exactly the others."""
    disks = [entry for _, entry in entries]
    rejected = [index for index, (accepted, _) in enumerate(entries) if not accepted]
    return {"disks": disks}, {"task": task, "items": rejected}


def validation_cases(attacks: Attacks, sandbox: str) -> dict[str, tuple[dict[str, Any], Any]]:
    """label -> (overrides of a valid case, expected outcome)."""
    a = attacks
    mount_points: list[tuple[bool, Any]] = [
        (True, "/srv/data"),
        (True, "/srv/a.b_c-d@e+f/.hidden"),
        (True, "/srv/nested"),
        (True, "/srv/nested/below"),
        (True, "/etcetera"),
        (False, "/"),
        (False, ""),
        (False, "srv/data"),
        (False, "/etc"),
        (False, "/etc/app"),
        (False, "/usr/local/app"),
        (False, "/boot/efi"),
        (False, "/proc"),
        (False, "/sys/fs/x"),
        (False, "/dev/sdb"),
        (False, "/run/x"),
        (False, "/var/run/x"),
        (False, "/lib/x"),
        (False, "/srv/../etc"),
        (False, "/srv/./x"),
        (False, "/srv/.."),
        (False, "/.."),
        (False, "/srv//x"),
        (False, "/srv/x/"),
        (False, "/srv/da ta"),
        (False, "/srv/da\tta"),
        (False, "/srv/da\nta"),
        (False, " /srv/x"),
        (False, "/srv/x,ro"),
        (False, "/.provisio"),
        (False, "/.provisio/x"),
        (False, "/" + "a" * 2000),
        (False, "/srv/" + a.jinja("mount-jinja")),
        (False, "/srv/" + a.jinja_statement("mount-statement")),
        (False, "/srv/" + a.command_substitution("mount-subst")),
        (False, "/srv/" + a.backticks("mount-backticks")),
        (False, "/srv/x" + a.command_separator("mount-separator")),
        (False, "a=b c=d"),
        (False, 5),
        (False, None),
        (False, ["/srv"]),
    ]
    mount_entries: list[tuple[bool, dict[str, Any] | str]] = [
        (accepted, disk(point, logical_volume=f"lv{index}"))
        for index, (accepted, point) in enumerate(mount_points)
    ]
    without_mount_point = {k: v for k, v in disk("/srv").items() if k != "mount_point"}
    mount_entries += [(False, without_mount_point), (False, "/srv/not-a-mapping")]

    names: list[tuple[bool, dict[str, Any]]] = [
        (True, {"volume_group": "vg.0+x_y-z", "logical_volume": "lv-1"}),
        (True, {"volume_group": "v" * 63}),
        (False, {"volume_group": "-vg"}),
        (False, {"volume_group": "."}),
        (False, {"volume_group": ".."}),
        (False, {"volume_group": "vg name"}),
        (False, {"volume_group": "vg/x"}),
        (False, {"volume_group": "v" * 64}),
        (False, {"volume_group": a.command_substitution("vg-subst")}),
        (False, {"volume_group": a.jinja("vg-jinja")}),
        (False, {"volume_group": ""}),
        (False, {"volume_group": 7}),
        (False, {"logical_volume": "snapshot1"}),
        (False, {"logical_volume": "pvmove0"}),
        (False, {"logical_volume": "data_tmeta"}),
        (False, {"logical_volume": "data_rimage_0"}),
        (False, {"logical_volume": "-lv"}),
        (False, {"logical_volume": a.command_separator("lv-separator")}),
    ]
    name_entries: list[tuple[bool, dict[str, Any] | str]] = [
        (accepted, {**disk(f"/srv/case{index}", logical_volume=f"lv{index}"), **values})
        for index, (accepted, values) in enumerate(names)
    ]

    sizes: list[tuple[bool, dict[str, Any]]] = [
        (True, {"filesystem_type": "xfs"}),
        (True, {"size_gb": 16384}),
        (True, {"allocation_params": {"stripes": 2}}),
        (False, {"filesystem_type": "btrfs"}),
        (False, {"filesystem_type": "ext4 "}),
        (False, {"filesystem_type": "EXT4"}),
        (False, {"filesystem_type": a.jinja("fs-jinja")}),
        (False, {"size_gb": 0}),
        (False, {"size_gb": -1}),
        (False, {"size_gb": "1"}),
        (False, {"size_gb": 1.5}),
        (False, {"size_gb": True}),
        (False, {"size_gb": 16385}),
        (False, {"size_gb": None}),
        (False, {"allocation_params": "--stripes 2"}),
    ]
    size_entries: list[tuple[bool, dict[str, Any] | str]] = [
        (accepted, {**disk(f"/srv/case{index}", logical_volume=f"lv{index}"), **values})
        for index, (accepted, values) in enumerate(sizes)
    ]

    def rejected_by(task: str) -> dict[str, Any]:
        return {"task": task, "items": []}

    cases: dict[str, tuple[dict[str, Any], Any]] = {
        "valid": ({}, "accepted"),
        "valid: no disks": ({"disks": []}, "accepted"),
        "valid: lvm backend": ({"backend": "lvm", "pvs": ["/dev/sdb", "/dev/sdc"]}, "accepted"),
        "mount points": disk_group(MOUNT_TASK, mount_entries),
        "volume names": disk_group(NAMES_TASK, name_entries),
        "filesystems and sizes": disk_group(SIZE_TASK, size_entries),
        "duplicate mount point": (
            {"disks": [disk("/srv/a", logical_volume="a"), disk("/srv/a", logical_volume="b")]},
            rejected_by(UNIQUE_TASK),
        ),
        "duplicate volume": ({"disks": [disk("/srv/a"), disk("/srv/b")]}, rejected_by(UNIQUE_TASK)),
        "deployment: not a mapping": ({"deployment": "deployment"}, rejected_by(DEPLOYMENT_TASK)),
        "disks: a mapping": ({"disks": {"mount_point": "/srv"}}, rejected_by(DEPLOYMENT_TASK)),
        "disks: a string": ({"disks": "/srv"}, rejected_by(DEPLOYMENT_TASK)),
        "backend: unknown": ({"backend": "zfs"}, rejected_by(DEPLOYMENT_TASK)),
    }
    deployment_cases: dict[str, dict[str, Any]] = {
        "id string": {"id": "7"},
        "id zero": {"id": 0},
        "id bool": {"id": True},
        "name integer": {"name": 5},
        "id jinja": {"id": a.jinja("deployment-id")},
    }
    for label, values in deployment_cases.items():
        cases[f"deployment: {label}"] = (
            {"deployment": deployment(7, **values)},
            rejected_by(DEPLOYMENT_TASK),
        )
    for label, root in {
        "root": "/",
        "below etc": "/etc/sandbox",
        "relative": "var/sandbox",
        "space": sandbox + "/a b",
        "dot dot": sandbox + "/../../etc",
        "not a string": 5,
    }.items():
        cases[f"sandbox root: {label}"] = ({"sandbox_root": root}, rejected_by(SANDBOX_TASK))
    for label, pvs in {
        "relative": ["sdb"],
        "a string": "/dev/sdb",
        "dot dot": ["/dev/../etc/passwd"],
        "jinja": ["/dev/" + a.jinja("pv-jinja")],
    }.items():
        cases[f"pvs: {label}"] = ({"backend": "lvm", "pvs": pvs}, rejected_by(PVS_TASK))
    return cases


def test_the_role_validates_every_input(tmp_path: Path) -> None:
    attacks = Attacks(tmp_path / "markers")
    sandbox = str(tmp_path / "sandbox")
    cases = validation_cases(attacks, sandbox)
    base = {
        "deployment": deployment(7),
        "disks": [disk("/srv/data")],
        "backend": "directory",
        "sandbox_root": sandbox,
        "pvs": [],
    }
    documents = [{**base, **overrides, "label": label} for label, (overrides, _) in cases.items()]
    # Two harness runs side by side: the cases of many disks, and the rest. (One run over all of
    # them is slower than both: every case drags the whole list of cases through templating.)
    many_disks = [d for d in documents if isinstance(d["disks"], list) and len(d["disks"]) > 3]
    halves = {"many-disks": many_disks, "rest": [d for d in documents if d not in many_disks]}
    processes = {}
    for name, half in halves.items():
        directory = tmp_path / name
        directory.mkdir()
        # Written as the runner writes user data: every string !unsafe.
        (directory / "cases.yml").write_text(
            yaml.dump({"validation_cases": _tag_strings(half)}, Dumper=_VarsDumper)
        )
        (directory / "harness.yml").write_text(HARNESS)
        (directory / "case.yml").write_text(CASE)
        processes[name] = subprocess.Popen(
            ["ansible-playbook", "harness.yml", "-e", f"outcome_file={directory / 'out.json'}"],
            cwd=directory,
            env=ansible_env(tmp_path, ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles")),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outcomes: dict[str, Any] = {}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-5000:]
        outcomes.update(json.loads((tmp_path / name / "out.json").read_text()))

    wrong = {
        label: {"expected": expected, "got": outcomes.get(label)}
        for label, (_, expected) in cases.items()
        if outcomes.get(label) != expected
    }
    assert wrong == {}
    assert attacks.fired() == []
    assert not Path(sandbox).exists()
