"""OpenTelemetry traces: one trace from a deployment's POST to its final history row.

The API's server spans come from FastAPI's instrumentation; temporalio's `TracingInterceptor`
on the API's and the worker's clients carries the context into the workflow (its start header)
and from there into every activity. A pipeline run is another process (ansible-runner, Jenkins)
that knows only its callback URL, so the `start_pipeline` activity puts its trace context into
that URL (`traceparent`, W3C); the callback endpoint continues the trace from it, and the
signals it sends the workflow carry it on.

Tracing is off unless an OTLP endpoint is configured: no provider, no interceptor, no middleware.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

# The API only (propagation, the current span): the SDK, the exporter and temporalio's
# interceptor are imported when tracing is configured, so a process without it loads none.
from opentelemetry import propagate, trace
from temporalio.client import Interceptor

from settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# The trace context's keys (W3C Trace Context) that travel in a callback URL's query.
TRACE_QUERY_KEYS = ("traceparent", "tracestate")

_configured: TracerProvider | None = None


def configure_tracing(settings: Settings, service_name: str) -> TracerProvider | None:
    """The process's tracer provider, exporting over OTLP/HTTP, or None when none is configured.
    Called once by a process's entry point (`provisio api`, `provisio worker`)."""
    global _configured
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(traces_endpoint(settings))))
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def configured_provider() -> TracerProvider | None:
    return _configured


def traces_endpoint(settings: Settings) -> str:
    """OTLP/HTTP wants the traces path; a bare collector address gets the standard one."""
    endpoint = settings.otlp_endpoint.rstrip("/")
    return endpoint if urlsplit(endpoint).path else f"{endpoint}/v1/traces"


def temporal_interceptors(provider: TracerProvider | None, name: str) -> list[Interceptor]:
    """For `Client.connect(interceptors=...)`: workers built on that client get them too."""
    if provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(provider.get_tracer(name))]


def with_trace_context(url: str) -> str:
    """The URL with the current span's context in its query, unchanged when nothing is traced."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    context = {key: carrier[key] for key in TRACE_QUERY_KEYS if key in carrier}
    if not context:
        return url
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(context)}"


@contextmanager
def continued_span(
    tracer: trace.Tracer | None, name: str, query: Mapping[str, str]
) -> Iterator[None]:
    """A span that continues the trace named in `query` (a callback URL's), linked to the
    request's own server span; nothing when tracing is off or the URL carries no context."""
    if tracer is None or "traceparent" not in query:
        yield
        return
    parent = propagate.extract({key: query[key] for key in TRACE_QUERY_KEYS if key in query})
    request_span = trace.get_current_span().get_span_context()
    links = [trace.Link(request_span)] if request_span.is_valid else []
    with tracer.start_as_current_span(name, context=parent, links=links):
        yield
