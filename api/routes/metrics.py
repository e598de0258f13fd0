"""`GET /metrics`: the API process's Prometheus metrics (telemetry/api_metrics.py), and the
deployments by status, counted in PostgreSQL at each scrape."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import SessionDep
from telemetry.api_metrics import DEPLOYMENTS, current_registry
from vocabulary.statuses import DeploymentStatus

router = APIRouter(tags=["metrics"], include_in_schema=False)
log = logging.getLogger("provisio.api.metrics")
COUNT_TIMEOUT_S = 3


@router.get("/metrics")
async def metrics(session: SessionDep) -> Response:
    try:
        rows = await asyncio.wait_for(
            session.execute(text("SELECT status, count(*) FROM deployments GROUP BY status")),
            COUNT_TIMEOUT_S,
        )
        counts: dict[str, int] = {status: count for status, count in rows}
    except Exception as exc:  # the process's own metrics are still worth a scrape
        log.warning("deployments by status not counted: %s", type(exc).__name__)
    else:
        # Every status, zeros included: a status nobody is in any more must not keep its count.
        for status in DeploymentStatus:
            DEPLOYMENTS.labels(status.value).set(counts.get(status.value, 0))
    return Response(generate_latest(current_registry()), media_type=CONTENT_TYPE_LATEST)
