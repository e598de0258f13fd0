"""The deployment read views as JSON bytes, serialised once.

FastAPI would validate each row into its response model, then have pydantic-core dump the
model. Here the rows, already of the models' types (the database's constraints and the read
model guarantee them), are put in the models' field order and dumped by the same pydantic-core
serializer (`to_json`), so the bytes are the ones the models would give: datetimes as
`...T12:00:00.120000Z`, numbers, text and nesting alike. The models stay the routes' documented
responses (OpenAPI); tests/api/test_read_views.py holds the two ways to the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Response
from pydantic_core import to_json

from api.schemas import (
    ApprovalPublic,
    DeploymentDetail,
    DeploymentDiskPublic,
    DeploymentSummary,
    HistoryEntry,
)
from settings import Settings
from vocabulary.leases import extension_refusal
from vocabulary.operations import allowed_operations, change_refusal
from vocabulary.statuses import DeploymentStatus

DETAIL_FIELDS = tuple(DeploymentDetail.model_fields)
SUMMARY_FIELDS = tuple(DeploymentSummary.model_fields)
DISK_FIELDS = tuple(DeploymentDiskPublic.model_fields)
APPROVAL_FIELDS = tuple(ApprovalPublic.model_fields)
HISTORY_FIELDS = tuple(HistoryEntry.model_fields)


def with_links(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The detail's fields derived from its row: the Temporal UI link and what may be done now."""
    ui = settings.temporal_ui_url.rstrip("/")
    status = DeploymentStatus(row["status"])
    row["temporal_url"] = (
        f"{ui}/namespaces/{settings.temporal_namespace}/workflows/{row['workflow_id']}"
    )
    row["allowed_operations"] = allowed_operations(status)
    row["lease_extendable"] = (
        row.get("expires_at") is not None and extension_refusal(status) is None
    )
    row["resizable"] = change_refusal(status) is None
    return row


def _disk(disk: dict[str, Any]) -> dict[str, Any]:
    shown = {name: disk[name] for name in DISK_FIELDS}
    # Built by json_build_object: the time as PostgreSQL writes it in JSON (ISO 8601).
    shown["state_changed_at"] = datetime.fromisoformat(disk["state_changed_at"])
    return shown


def detail_json(row: dict[str, Any], settings: Settings) -> bytes:
    """A detail row (db.deployment_reads.detail_row) as DeploymentDetail's JSON."""
    with_links(row, settings)
    row["disk_allocations"] = [_disk(disk) for disk in row["disk_allocations"]]
    if (approval := row["approval"]) is not None:
        row["approval"] = {name: approval[name] for name in APPROVAL_FIELDS}
    return to_json({name: row[name] for name in DETAIL_FIELDS})


def page_json(rows: list[dict[str, Any]], next_cursor: str | None) -> bytes:
    """A list page as DeploymentPage's JSON."""
    items = [{name: row[name] for name in SUMMARY_FIELDS} for row in rows]
    return to_json({"items": items, "next_cursor": next_cursor})


def history_json(rows: list[dict[str, Any]]) -> bytes:
    """History rows as list[HistoryEntry]'s JSON."""
    return to_json([{name: row[name] for name in HISTORY_FIELDS} for row in rows])


def json_response(body: bytes) -> Response:
    """As FastAPI answers a response model: 200, `content-type: application/json`."""
    return Response(body, media_type="application/json")
