"""Static checks of the production-shaped stack: docker-compose.yml, the images, Jenkins as code.

No Docker engine runs where these tests run, so they read the files; `docker compose config` (which
validates without an engine) runs too when the client has the compose plugin.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from settings import Settings
from tests.jenkins_double import DEPLOY_CODE, JOB_CHOICES, JOB_PARAMETERS
from vocabulary.runs import RunAction
from workflows import search_attributes

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
JENKINS = REPO / "jenkins_job"

# A ${VAR}, ${VAR:-default} or ${VAR:?message} reference in the compose file.
VAR_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?[^}]*\}")
REQUIRED_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}$")
SECRET_KEY = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/:@\s]+:(?P<password>[^@\s]+)@")
LONG_RUNNING_RESTART = {"always", "unless-stopped"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # the short form means service_started
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def one_shot_services(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services something waits on to complete: they run to the end, the rest keep running."""
    return {
        name
        for service in services.values()
        for name, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }


def required_variables() -> set[str]:
    return {m["name"] for m in VAR_REF.finditer(COMPOSE_FILE.read_text()) if m["op"] in ("?", ":?")}


def test_every_service_has_a_pinned_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service.get("image", "")
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image!r} is not a version"


def test_base_images_are_pinned() -> None:
    app = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", app, re.MULTILINE), app
    jenkins = (JENKINS / "Dockerfile").read_text()
    assert re.search(r"^FROM jenkins/jenkins:\d+\.\d+\.\d+-lts-jdk\d+$", jenkins, re.MULTILINE)


def test_the_app_image_installs_the_project_and_runs_as_non_root() -> None:
    app = (REPO / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install \.$", app, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", app, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users


def test_the_build_context_leaves_secrets_and_local_state_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".env", ".venv", ".git", "var/"):
        assert entry in ignored


def test_temporal_server_and_admin_tools_come_from_the_same_release(
    services: dict[str, dict[str, Any]],
) -> None:
    server_tag = services["temporal"]["image"].split(":")[1]
    admin_tags = {
        service["image"].split(":")[1]
        for service in services.values()
        if service.get("image", "").startswith("temporalio/admin-tools:")
    }
    # temporal-schema brings the schema to the admin-tools version; the server must expect that one.
    assert admin_tags == {server_tag}


def test_one_shots_run_once_and_the_rest_restart(services: dict[str, dict[str, Any]]) -> None:
    one_shots = one_shot_services(services)
    assert {"migrate", "temporal-schema", "temporal-setup"} <= one_shots
    for name, service in services.items():
        if name in one_shots:
            assert service.get("restart") == "no", name
            assert "ports" not in service, name
        else:
            assert service.get("restart") in LONG_RUNNING_RESTART, name


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    one_shots = one_shot_services(services)
    for name, service in services.items():
        if name in one_shots:
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_api_and_worker_start_after_the_database_the_migrations_and_temporal(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", "worker"):
        deps = depends_on(services[name])
        assert deps.get("postgres") == "service_healthy", name
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("temporal") == "service_healthy", name
        # The namespace and the search attributes exist before any workflow starts.
        assert deps.get("temporal-setup") == "service_completed_successfully", name
    assert depends_on(services["migrate"]).get("postgres") == "service_healthy"


def test_every_dependency_condition_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} is never healthy"


def test_the_search_attributes_registered_are_the_ones_the_workflows_set(
    services: dict[str, dict[str, Any]],
) -> None:
    registered = dict(
        pair.split("=", 1)
        for pair in environment(services["temporal-setup"])["SEARCH_ATTRIBUTES"].split()
    )
    assert registered == {
        "DeploymentId": "Int",
        "DeploymentStatus": "Keyword",
        "TemplateName": "Keyword",
        "ServiceType": "Keyword",
        "Owner": "Keyword",
    }
    types = {"INT": "Int", "KEYWORD": "Keyword"}
    assert registered == {
        key.name: types[key.indexed_value_type.name] for key in search_attributes.ALL
    }
    # One namespace for the setup, the app and the UI.
    namespace = environment(services["temporal-setup"])["NAMESPACE"]
    assert environment(services["worker"])["PROVISIO_TEMPORAL_NAMESPACE"] == namespace
    assert environment(services["temporal-ui"])["TEMPORAL_DEFAULT_NAMESPACE"] == namespace


def test_no_plaintext_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_REF.match(value), f"{name}.{key} must be ${{VAR:?...}}: {value!r}"
            credentials = URL_CREDENTIALS.search(value)
            if credentials:
                assert REQUIRED_REF.match(credentials["password"]), f"{name}.{key}: {value!r}"
    # Nothing in the file spells a password out under another name either.
    text = COMPOSE_FILE.read_text()
    for line in text.splitlines():
        match = re.match(r"\s*-?\s*([A-Z_]*(PASSWORD|TOKEN|SECRET)[A-Z_]*)\s*[:=]\s*(.+)", line)
        if match:
            assert match[3].strip().strip("\"'").startswith("${"), line


def test_env_example_lists_every_required_variable() -> None:
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    assert required_variables() <= listed
    # And gives none of them a value.
    for line in (REPO / ".env.example").read_text().splitlines():
        if re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            assert line.endswith("="), line


def published(service: dict[str, Any]) -> set[str]:
    return {str(port) for port in service.get("ports", [])}


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    assert published(services["api"]) == {"8000:8000"}
    assert published(services["temporal-ui"]) == {"127.0.0.1:8233:8080"}
    assert published(services["jenkins"]) == {"8080:8080"}
    assert published(services["postgres"]) == set()
    host_ports = [port.rsplit(":", 1)[0] for svc in services.values() for port in published(svc)]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_temporal_is_reachable_from_this_machine_only(services: dict[str, dict[str, Any]]) -> None:
    # Neither the frontend nor the UI has a sign-in here: whoever reaches them can signal a
    # deployment's workflow past the signed callback, or terminate it.
    for name in ("temporal", "temporal-ui"):
        ports = published(services[name])
        assert ports, name
        for port in ports:
            assert port.startswith("127.0.0.1:") and port.count(":") == 2, f"{name}: {port}"


# The temporalio/ui-server image's settings (its docker/config-template.yaml).
UI_AUTH_SETTINGS = (
    "TEMPORAL_AUTH_ENABLED",
    "TEMPORAL_AUTH_PROVIDER_URL",
    "TEMPORAL_AUTH_CLIENT_ID",
    "TEMPORAL_AUTH_CLIENT_SECRET",
    "TEMPORAL_AUTH_CALLBACK_URL",
    "TEMPORAL_AUTH_SCOPES",
)


def test_the_temporal_ui_is_read_only_and_its_sign_in_documented(
    services: dict[str, dict[str, Any]],
) -> None:
    ui = environment(services["temporal-ui"])
    assert ui["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    # Nothing turns a single action back on behind the global switch's back.
    assert not {key for key, value in ui.items() if key.endswith("_DISABLED") and value != "true"}
    readme = (REPO / "README.md").read_text()
    for name in UI_AUTH_SETTINGS:
        assert name in readme, f"README does not say how to set {name}"


def test_each_app_service_gets_only_its_own_secrets(services: dict[str, dict[str, Any]]) -> None:
    api, worker, migrate = (environment(services[name]) for name in ("api", "worker", "migrate"))
    # The worker makes callback tokens and drives Jenkins; it signs no sign-in.
    assert "PROVISIO_SECRET_KEY" not in worker
    assert {"PROVISIO_CALLBACK_SECRET", "PROVISIO_JENKINS_TOKEN"} <= set(worker)
    # The API signs sign-ins and checks callbacks; it starts no build.
    assert {"PROVISIO_SECRET_KEY", "PROVISIO_CALLBACK_SECRET"} <= set(api)
    assert "PROVISIO_JENKINS_TOKEN" not in api
    # Two secrets, from two variables.
    assert api["PROVISIO_SECRET_KEY"] != api["PROVISIO_CALLBACK_SECRET"]
    assert worker["PROVISIO_CALLBACK_SECRET"] == api["PROVISIO_CALLBACK_SECRET"]
    # Only the one-shot that creates the first admin gets its password, and no other secret.
    assert "PROVISIO_ADMIN_PASSWORD" not in api and "PROVISIO_ADMIN_PASSWORD" not in worker
    assert not {"PROVISIO_SECRET_KEY", "PROVISIO_CALLBACK_SECRET"} & set(migrate)
    assert "PROVISIO_ADMIN_PASSWORD" in migrate


def test_api_docs_are_off_unless_turned_on(services: dict[str, dict[str, Any]]) -> None:
    assert environment(services["api"])["PROVISIO_API_DOCS"] == "${PROVISIO_API_DOCS:-false}"
    assert Settings.model_fields["api_docs"].default is False


def test_the_api_runs_a_process_per_core_with_one_metrics_directory(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert api["command"] == ["provisio", "api"]
    env = environment(api)
    # Empty: one process per core (settings.py); the operator may set a number in .env.
    assert env["PROVISIO_API_PROCESSES"] == "${PROVISIO_API_PROCESSES:-}"
    assert Settings(api_processes="").api_processes >= 1  # type: ignore[arg-type]
    # The processes' metrics files on a tmpfs of the API's own, writable by its user (10001,
    # the Dockerfile's): gone with the container, emptied by `provisio api` at each start.
    metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"]
    (mount,) = [m for m in api.get("tmpfs", []) if m.split(":", 1)[0] == metrics_dir]
    assert {"uid=10001", "gid=10001", "mode=0700"} <= set(mount.split(":", 1)[1].split(","))
    for name in ("worker", "migrate"):
        assert "PROMETHEUS_MULTIPROC_DIR" not in environment(services[name]), name
        assert "PROVISIO_API_PROCESSES" not in environment(services[name]), name


def test_the_env_file_is_never_committed(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        check = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, check=False
        )
        return check.returncode == 0

    assert ignored(".env") and ignored(".env.local")
    assert not ignored(".env.example")


def test_builds_and_mounted_files_exist_in_the_repo(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            context = REPO / build["context"]
            assert context.is_dir(), f"{name}: no build context {context}"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name}: undeclared volume {source}"


def sh_step_arguments(jenkinsfile: str) -> list[str]:
    """What follows each `sh` step (`sh '...'`, `sh(script: ...)`), comment lines left out."""
    code = "\n".join(
        line for line in jenkinsfile.splitlines() if not line.lstrip().startswith("//")
    )
    return [code[m.end() :].lstrip() for m in re.finditer(r"(?m)^\s*sh\b\s*\(?", code)]


def test_jenkinsfile_passes_values_to_the_shell_as_data() -> None:
    jenkinsfile = (JENKINS / "Jenkinsfile").read_text()
    steps = sh_step_arguments(jenkinsfile)
    assert steps, "no sh step found"
    for step in steps:
        step = re.sub(r"^script\s*:\s*", "", step)
        # Single quotes: Groovy never interpolates, the shell expands the environment variables.
        assert step.startswith("'"), f"sh step with an interpolating string: {step[:60]!r}"
    for pattern in ("${params.", "${env.", "shell=True"):
        assert pattern not in jenkinsfile
    # The user's variables reach the entry script through a file, never the command line.
    assert re.search(r"writeFile\s+file:\s*'vars\.json',\s*text:\s*params\.VARS_JSON", jenkinsfile)
    assert "jenkins_job/run_deployment.py" in jenkinsfile
    assert '--vars-json "$WORKSPACE/vars.json"' in jenkinsfile
    assert '--action "$ACTION" --run "$RUN"' in jenkinsfile


def sh_step_scripts(jenkinsfile: str) -> list[str]:
    """The script of each `sh` step written as a single-quoted string (one or three quotes)."""
    scripts = []
    for step in sh_step_arguments(jenkinsfile):
        quote = "'''" if step.startswith("'''") else "'"
        if step.startswith(quote):
            scripts.append(step[len(quote) : step.index(quote, len(quote))])
    return scripts


def test_the_callback_token_is_not_traced_into_the_build_log() -> None:
    # Jenkins runs an sh step as `sh -xe` unless the script starts with its own shebang line:
    # with -x, `export PROVISIO_CALLBACK_TOKEN="$CALLBACK_TOKEN"` is echoed with the value.
    jenkinsfile = (JENKINS / "Jenkinsfile").read_text()
    scripts = [script for script in sh_step_scripts(jenkinsfile) if "CALLBACK_TOKEN" in script]
    assert len(scripts) == 1
    script = scripts[0]
    assert script.startswith("#!/bin/sh"), script[:40]
    shebang_options = script.splitlines()[0].removeprefix("#!/bin/sh").replace(" ", "")
    assert "x" not in shebang_options
    assert "set -x" not in script and "set -o xtrace" not in script


def test_no_shell_in_the_entry_script() -> None:
    source = (JENKINS / "run_deployment.py").read_text()
    assert "shell=True" not in source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                assert keyword.arg != "shell", ast.unparse(node)
    assert "os.system" not in source and "os.popen" not in source


@pytest.fixture(scope="module")
def job_dsl() -> str:
    casc = yaml.safe_load((JENKINS / "casc.yaml").read_text())
    scripts = [entry["script"] for entry in casc["jobs"] if "script" in entry]
    assert len(scripts) == 1
    return scripts[0]


def test_casc_defines_the_deploy_job_with_exactly_its_six_parameters(job_dsl: str) -> None:
    job = re.search(r"pipelineJob\('([^']+)'\)", job_dsl)
    assert job and job[1] == Settings.model_fields["jenkins_job"].default
    parameters = {name: kind for kind, name in re.findall(r"\b(\w+Param)\('([^']+)'", job_dsl)}
    assert parameters == {
        "DEPLOYMENT_ID": "stringParam",
        "ACTION": "choiceParam",
        "RUN": "stringParam",
        "CALLBACK_URL": "stringParam",
        "CALLBACK_TOKEN": "nonStoredPasswordParam",
        "VARS_JSON": "textParam",
    }
    # The same names, defaults and choices as the Jenkins double's job.
    assert list(parameters) == list(JOB_PARAMETERS)
    choices = re.search(r"choiceParam\('ACTION', \[([^\]]*)\]", job_dsl)
    assert choices is not None
    assert tuple(re.findall(r"'([^']*)'", choices[1])) == JOB_CHOICES["ACTION"]
    assert JOB_CHOICES["ACTION"] == tuple(action.value for action in RunAction)
    assert JOB_PARAMETERS["ACTION"][1] == JOB_CHOICES["ACTION"][0]  # a choice's default
    assert re.search(r"stringParam\('RUN', '1',", job_dsl) and JOB_PARAMETERS["RUN"][1] == "1"
    assert "sandbox(true)" in job_dsl
    # JCasC expands ${...} in the script before Job DSL runs it.
    assert "${" not in job_dsl


def test_casc_reads_the_jenkinsfile_the_image_ships() -> None:
    casc = (JENKINS / "casc.yaml").read_text()
    dockerfile = (JENKINS / "Dockerfile").read_text()
    assert "${readFileBase64:/opt/provisio/jenkins_job/Jenkinsfile}" in casc
    assert re.search(r"^COPY jenkins_job/ /opt/provisio/jenkins_job/$", dockerfile, re.MULTILINE)
    assert "CASC_JENKINS_CONFIG=/opt/provisio/jenkins_job/casc.yaml" in dockerfile


def test_the_jenkins_image_carries_the_deploy_code_and_the_callback_contract() -> None:
    dockerfile = (JENKINS / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+)/ /opt/provisio/\1/$", dockerfile, re.MULTILINE))
    # The callback plugin loads vocabulary/callback_events.py beside playbooks/ (or disables
    # itself: tests/playbooks/test_callback_transport.py), and the Jenkins double's builds copy
    # exactly what the image carries.
    assert copied == {"jenkins_job", "pipeline", "playbooks", "vocabulary"}
    assert copied == set(DEPLOY_CODE)


def test_plugins_cover_what_casc_uses() -> None:
    plugins = {
        line.split(":")[0].strip()
        for line in (JENKINS / "plugins.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"configuration-as-code", "job-dsl", "workflow-aggregator", "credentials-binding"} <= (
        plugins
    )
    casc = (JENKINS / "casc.yaml").read_text()
    if "nonStoredPasswordParam" in casc:
        assert "mask-passwords" in plugins
    if "globalMatrix" in casc:
        assert "matrix-auth" in plugins


def compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def compose_config(tmp_path: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `config` validates and interpolates without an engine. An empty env file, so that a
    # developer's own .env plays no part; the required variables come from `variables` only.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {key: value for key, value in os.environ.items() if key not in required_variables()}
    env.update(variables)
    return subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


needs_compose = pytest.mark.skipif(
    not compose_plugin_available(),
    reason="the docker client here has no compose plugin (`docker compose` is unknown)",
)


@needs_compose
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    dummies = {name: "dummy-value" for name in required_variables()}
    result = compose_config(tmp_path, dummies)
    assert result.returncode == 0, result.stderr


@needs_compose
def test_docker_compose_refuses_to_run_without_a_secret(tmp_path: Path) -> None:
    dummies = {name: "dummy-value" for name in required_variables()}
    del dummies["PROVISIO_SECRET_KEY"]
    result = compose_config(tmp_path, dummies)
    assert result.returncode != 0 and "PROVISIO_SECRET_KEY" in result.stderr


def test_prometheus_and_grafana_come_only_with_the_observability_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    for name in profiled:
        assert services[name]["profiles"] == ["observability"]
        # Neither has a sign-in worth the name for the open internet: this machine only.
        for port in published(services[name]):
            assert port.startswith("127.0.0.1:") and port.count(":") == 2, f"{name}: {port}"


def test_prometheus_scrapes_the_api_and_every_worker_where_they_serve_metrics(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: (sd["names"], sd["port"], job["metrics_path"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    api_port = int(published(services["api"]).pop().rsplit(":", 1)[1])
    worker_address = environment(services["worker"])["PROVISIO_WORKER_METRICS_ADDRESS"]
    worker_port = int(worker_address.rsplit(":", 1)[1])
    assert targets["provisio-api"] == (["api"], api_port, "/metrics")
    assert targets["provisio-worker"] == (["worker"], worker_port, "/metrics")
    # On the compose network, not published: Prometheus reaches it, the outside does not.
    assert worker_address.startswith("0.0.0.0:")
    assert not published(services["worker"])


def test_grafana_provisions_the_dashboard_on_the_prometheus_datasource(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = REPO / "deploy" / "grafana"
    sources = yaml.safe_load(
        (grafana / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (grafana / "provisioning" / "dashboards" / "provisio.yml").read_text()
    )
    dashboards_path = providers["providers"][0]["options"]["path"]
    mounts = {
        volume.split(":")[1]: volume.split(":")[0] for volume in services["grafana"]["volumes"]
    }
    assert (REPO / mounts[dashboards_path] / "provisio.json").is_file()
    dashboard = json.loads((grafana / "dashboards" / "provisio.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Deployments by status", "Callback events ingested", "Errors"} <= titles
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
            # Valid PromQL once Grafana has put its interval in.
            promql_parser.parse(target["expr"].replace("$__rate_interval", "1m"))
