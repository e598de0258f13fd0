"""The vocabulary is the one definition: the layers that must spell a word out agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import Table

from api.schemas import DiskPublic
from db.models import Deployment, DiskAllocation, TemplateDiskAllocation
from vocabulary.disks import DISK_FIELDS
from vocabulary.statuses import (
    FINAL_STATUSES,
    HISTORY_STATUSES,
    PROVISIONING_ORDER,
    SETTLED_STATUSES,
    TERMINAL_STATUSES,
    DeploymentStatus,
    status_rank,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_status_is_in_progress_settled_or_terminal_exactly_once() -> None:
    in_progress = {s for s in DeploymentStatus if not s.is_final}
    assert not SETTLED_STATUSES & TERMINAL_STATUSES
    assert in_progress | SETTLED_STATUSES | TERMINAL_STATUSES == set(DeploymentStatus)
    assert FINAL_STATUSES == SETTLED_STATUSES | TERMINAL_STATUSES
    assert set(PROVISIONING_ORDER) <= in_progress
    assert [status_rank(s) for s in PROVISIONING_ORDER] == list(range(len(PROVISIONING_ORDER)))
    assert {status_rank(s) for s in FINAL_STATUSES} == {len(PROVISIONING_ORDER)}
    assert HISTORY_STATUSES[0] == "created" and set(HISTORY_STATUSES[1:]) == set(DeploymentStatus)


def test_the_database_and_the_api_know_the_same_disk_fields() -> None:
    for model in (DiskAllocation, TemplateDiskAllocation):
        assert set(DISK_FIELDS) <= {c.name for c in model.__table__.columns}, model
    assert tuple(DiskPublic.model_fields) == DISK_FIELDS


def test_the_status_constraint_is_the_vocabulary() -> None:
    table = Deployment.__table__
    assert isinstance(table, Table)
    (check,) = [c for c in table.constraints if c.name == "deployments_status_valid"]
    listed = str(getattr(check, "sqltext", "")).split("IN (")[1].rstrip(")")
    assert sorted(listed.replace("'", "").split(", ")) == sorted(s.value for s in DeploymentStatus)


def test_no_status_is_retyped_outside_the_vocabulary() -> None:
    """Application code names statuses through DeploymentStatus, never as a string literal."""
    statuses = {s.value for s in DeploymentStatus} - {"failed", "running"}  # also plain words
    # Jenkins' own JSON says a queue item was "cancelled": its word, not a deployment status.
    foreign = {("pipeline/jenkins_runner.py", "cancelled")}
    found = []
    for package in ("api", "activities", "db", "domain", "pipeline", "workflows", "devstack"):
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Constant) and node.value in statuses):
                    continue
                if (str(path.relative_to(REPO)), node.value) not in foreign:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert found == []
