"""The FastAPI application: engine, sessionmaker and Temporal client live once per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from temporalio.client import Client

from api.api_docs import install_api_docs
from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handler
from api.routes import (
    approvals,
    audit,
    auth,
    callbacks,
    deployments,
    events,
    health,
    metrics,
    plans,
    templates,
    ui,
    users,
)
from db.session import create_autocommit_sessionmaker, create_engine, create_sessionmaker
from domain.callback_tokens import check_callback_secret
from settings import Settings, get_settings
from telemetry.api_metrics import RequestMetricsMiddleware
from telemetry.logs import RequestDeploymentMiddleware
from telemetry.tracing import configured_provider, temporal_interceptors

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def create_app(
    settings: Settings | None = None, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """`tracer_provider`: where this app's spans go; by default the process's, if tracing is
    configured (telemetry/tracing.py), else none are made."""
    settings = settings or get_settings()
    tracer_provider = tracer_provider or configured_provider()
    if len(settings.secret_key) < 32:
        raise ValueError("PROVISIO_SECRET_KEY must be at least 32 characters")
    check_callback_secret(settings.callback_secret, api_secret_key=settings.secret_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=10, max_overflow=20)
        app.state.settings = settings
        app.state.engine = engine  # its pool serves the raw asyncpg paths (reads, callbacks)
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_autocommit_sessionmaker(engine)
        app.state.temporal = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            interceptors=temporal_interceptors(tracer_provider, "provisio.api"),
        )
        try:
            yield
        finally:
            await engine.dispose()

    # FastAPI's own /docs and /redoc load their scripts from a CDN: off, and Swagger UI only
    # when asked for, from local files (api/api_docs.py). /openapi.json stays.
    app = FastAPI(
        title="Provisio",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    if settings.api_docs:
        install_api_docs(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestDeploymentMiddleware)
    # Outermost, so that a body refused by the limit is timed and counted too.
    app.add_middleware(RequestMetricsMiddleware)
    install_error_handler(app)
    app.state.tracer = None
    if tracer_provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app.state.tracer = tracer_provider.get_tracer("provisio.api")
        # One span per request: no extra span per ASGI message sent or received.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            excluded_urls="/metrics,/api/health",
            exclude_spans=["receive", "send"],
        )
    routers = (
        health,
        auth,
        users,
        templates,
        plans,
        deployments,
        approvals,
        audit,
        events,
        callbacks,
        ui,
        metrics,
    )
    for module in routers:
        app.include_router(module.router)
    return app
