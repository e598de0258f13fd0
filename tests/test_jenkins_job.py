"""The provisio-deploy job keeps its secrets out of the build log and the builds' environment.

Jenkins runs an `sh` step's script as `sh -xe script` unless the script starts with its own `#!`
line; Jenkins exports every parameter, the callback token included, to every step. No Jenkins runs
here, so the scripts are run the way Jenkins runs them (tests/test_compose.py reads the rest).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_compose import (
    COMPOSE_FILE,
    JENKINS,
    environment,
    required_variables,
    sh_step_scripts,
)

JENKINSFILE = JENKINS / "Jenkinsfile"
TOKEN = "cb-token-4f1d9a-never-in-a-log"
# What tracing or dumping the environment looks like in a shell script.
TRACING = re.compile(
    r"\bset\s+-[a-wyz]*x|\bset\s+-o\s+xtrace|\bsh\s+-[a-z]*x|\b(printenv|env)\s*($|\|)"
)
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def jenkinsfile() -> str:
    return JENKINSFILE.read_text()


@pytest.fixture(scope="module")
def scripts(jenkinsfile: str) -> list[str]:
    found = sh_step_scripts(jenkinsfile)
    # Prepare, Run and the cleanup: every sh step of the file is a single-quoted script.
    assert len(found) == len(re.findall(r"(?m)^\s*sh\b", jenkinsfile)) == 3
    return found


def test_no_sh_step_traces_its_commands(scripts: list[str]) -> None:
    # Every step sees CALLBACK_TOKEN in its environment: none may run under -x.
    for script in scripts:
        first, *_ = script.splitlines()
        assert re.fullmatch(r"#!/bin/(ba)?sh -e", first), f"no shebang without -x: {first!r}"
        assert not TRACING.search(script), script


def run_like_jenkins(script: str, workspace: Path, env: dict[str, str]) -> str:
    """Run a sh step's script as Jenkins' durable task does; return all it printed."""
    path = workspace / "script.sh"
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    command = [str(path)] if script.startswith("#!") else ["sh", "-xe", str(path)]
    result = subprocess.run(
        command, cwd=workspace, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_token_never_reaches_the_build_log(scripts: list[str], tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    home = tmp_path / "provisio-home"
    bin_dir = tmp_path / "bin"
    for directory in (workspace, home / "jenkins_job", bin_dir):
        directory.mkdir(parents=True)
    # The run step execs python3: a stand-in that reports what it was given, as a build would
    # show it (its arguments in the log, the token only in its environment).
    python3 = bin_dir / "python3"
    python3.write_text('#!/bin/sh\necho "python3 $*"\n[ -n "$PROVISIO_CALLBACK_TOKEN" ]\n')
    python3.chmod(0o755)
    (workspace / "vars.json").write_text("{}")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "WORKSPACE": str(workspace),
        "PROVISIO_HOME": str(home),
        # Jenkins exports every parameter to every step.
        "DEPLOYMENT_ID": "42",
        "ACTION": "deploy",
        "RUN": "1",
        "CALLBACK_URL": "http://api:8000/api/deployments/42/callback?run=1",
        "CALLBACK_TOKEN": TOKEN,
        "VARS_JSON": "{}",
    }
    logs = [run_like_jenkins(script, workspace, env) for script in scripts]
    run_log = next(log for log in logs if "python3 jenkins_job/run_deployment.py" in log)
    assert "--action deploy --run 1" in run_log
    for log in logs:
        assert TOKEN not in log, log


def test_the_token_is_masked_around_the_run_step(jenkinsfile: str) -> None:
    mask = re.search(
        r"maskPasswords\(varPasswordPairs: \[\[var: 'CALLBACK_TOKEN', "
        r"password: env\.CALLBACK_TOKEN\]\]\) \{(?P<body>.*?)\n {16}\}",
        jenkinsfile,
        re.DOTALL,
    )
    assert mask, "the run step is not wrapped in maskPasswords for CALLBACK_TOKEN"
    assert 'export PROVISIO_CALLBACK_TOKEN="$CALLBACK_TOKEN"' in mask["body"]
    # The only step that uses the token is the masked one.
    outside = jenkinsfile.replace(mask[0], "")
    assert "$CALLBACK_TOKEN" not in outside and "params.CALLBACK_TOKEN" not in outside


def test_no_secret_is_bound_for_every_step(jenkinsfile: str) -> None:
    # environment {} binds for every step of its scope, credentials() included: a stored secret a
    # step needs goes through withCredentials around that step alone.
    code = "\n".join(line.split("//")[0] for line in jenkinsfile.splitlines())
    for block in re.finditer(r"\benvironment\s*\{(?P<body>[^}]*)\}", code):
        for name, value in re.findall(r"(\w+)\s*=\s*(.+)", block["body"]):
            assert not SECRET_NAME.search(name) and "credentials(" not in value, (name, value)
    assert "credentials(" not in re.sub(r"withCredentials\(\[.*?\]\)", "", code, flags=re.S)


def compose_jenkins() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["jenkins"])


def test_the_jenkins_controller_environment_holds_no_secret() -> None:
    # Builds run on the controller and inherit its environment.
    env = environment(compose_jenkins())
    assert env, "the jenkins service has no environment"
    for name, value in env.items():
        assert not SECRET_NAME.search(name), f"{name} is in every build's environment"
        assert "PASSWORD" not in value and "TOKEN" not in value, (name, value)


def test_casc_reads_its_passwords_from_secret_files_compose_mounts() -> None:
    casc = (JENKINS / "casc.yaml").read_text()
    # The ${NAME} JCasC resolves that hold a password or token.
    referenced = {
        name for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", casc) if SECRET_NAME.search(name)
    }
    assert referenced == {"JENKINS_ADMIN_PASSWORD", "PROVISIO_JENKINS_TOKEN"}
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    mounted = {
        secret["target"]: secret["source"] for secret in compose_jenkins().get("secrets", [])
    }
    # JCasC's Docker secrets source reads /run/secrets/<NAME> for ${NAME}.
    assert set(mounted) == referenced
    for target, source in mounted.items():
        assert compose["secrets"][source] == {"environment": target}
    # And compose refuses to start while one is unset.
    assert referenced <= required_variables()
