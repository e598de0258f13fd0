"""The worker registers exactly the activities the workflows call, from one list."""

from __future__ import annotations

import ast
import inspect
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio import activity
from temporalio.client import Client

from activities.deployment_activities import DeploymentActivities
from activities.pipeline_activities import PipelineActivities
from activities.webhook_activities import WebhookActivities
from db.session import SessionMaker
from pipeline.manual_runner import ManualRunner
from settings import Settings
from vocabulary.activities import INTERFACES, PipelineSteps, activity_methods, declared_activities
from vocabulary.contracts import StartPipelineInput
from vocabulary.runs import RunRef
from worker import build_worker
from workflows import deploy, webhook_delivery

CALLS_BY_REFERENCE = ("execute_activity_method", "execute_local_activity_method")


def _called_by_workflows() -> set[str]:
    """`Interface.name` of every execute_activity_method (or its local form) call in the
    workflow modules: by reference, so mypy checks the arguments."""
    called = set()
    nodes = [
        node
        for module in (deploy, webhook_delivery)
        for node in ast.walk(ast.parse(inspect.getsource(module)))
    ]
    for node in nodes:
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("execute_"):
            assert getattr(node.func, "attr", "") in CALLS_BY_REFERENCE, ast.unparse(node)
            target = node.args[0]
            assert isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
            called.add(f"{target.value.id}.{target.attr}")
    return called


def test_the_workflows_call_every_declared_activity_and_nothing_else() -> None:
    declared = {f"{i.__name__}.{name}" for i in INTERFACES for name in declared_activities(i)}
    assert _called_by_workflows() == declared


async def test_the_worker_registers_every_declared_activity_once(
    client: Client, sessionmaker: SessionMaker
) -> None:
    deployments = DeploymentActivities(sessionmaker)
    pipelines = PipelineActivities(ManualRunner(), Settings())
    webhooks = WebhookActivities(sessionmaker, Settings())
    methods = activity_methods(deployments, pipelines, webhooks)
    names = [activity._Definition.must_from_callable(method).name for method in methods]
    assert names == [name for i in INTERFACES for name in declared_activities(i)]
    assert len(set(names)) == len(names)
    with ThreadPoolExecutor(max_workers=1) as executor:
        # The worker is built from the same list; Worker refuses duplicate names.
        build_worker(client, Settings(), sessionmaker, ManualRunner(), executor)


def test_an_implementation_missing_an_activity_is_refused() -> None:
    class Partial(PipelineSteps):
        @activity.defn
        def start_pipeline(self, data: StartPipelineInput) -> RunRef:
            return RunRef("job-1")

    with pytest.raises(TypeError, match="does not implement run_host"):
        activity_methods(Partial())
    with pytest.raises(TypeError, match="implements no activity interface"):
        activity_methods(object())
