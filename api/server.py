"""How `provisio api` serves the app under uvicorn; the tests serve it the same way."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from settings import Settings


def server_config(settings: Settings, *, host: str, port: int, **extra: object) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        # Open event streams must not hold a shutdown for their whole lifetime.
        timeout_graceful_shutdown=5,
        # api/client_address.py reads the client's address, believing X-Forwarded-For only
        # from `trusted_proxies`; uvicorn's own reading would trust it from any local peer first.
        proxy_headers=False,
        # uvicorn's loggers go to the root handler (telemetry/logs.py: JSON off a terminal)
        # instead of the handlers uvicorn would install, which would also stop their lines
        # from reaching the root handler.
        log_config=None,
        **extra,  # type: ignore[arg-type]
    )
