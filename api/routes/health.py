from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SessionDep, TemporalDep
from api.schemas import error_responses

router = APIRouter(
    tags=["health"],
    responses=error_responses(
        503,
    ),
)
CHECK_TIMEOUT_S = 3


@router.get("/api/health")
async def health(session: SessionDep, temporal: TemporalDep) -> JSONResponse:
    body = {"status": "ok", "database": "ok", "temporal": "ok"}
    try:
        await asyncio.wait_for(session.execute(text("SELECT 1")), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "not healthy", with the reason
        body["database"] = f"error: {type(exc).__name__}"
    try:
        healthy = await asyncio.wait_for(temporal.service_client.check_health(), CHECK_TIMEOUT_S)
        if not healthy:
            body["temporal"] = "error: not serving"
    except Exception as exc:
        body["temporal"] = f"error: {type(exc).__name__}"
    ok = body["database"] == "ok" and body["temporal"] == "ok"
    body["status"] = "ok" if ok else "unavailable"
    return JSONResponse(body, status_code=200 if ok else 503)
