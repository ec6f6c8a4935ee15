"""OpenTelemetry tracing set-up with the exporter ``none``, ``console`` or ``otlp``."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from shared.errors import ConfigurationError


def setup_tracing(exporter: str, *, service_name: str, otlp_endpoint: str | None = None) -> TracerProvider:
    """Return a tracer provider for ``service_name`` that sends spans to ``exporter``.

    The provider is returned rather than installed globally, so tests can run several side by
    side. The caller passes it to the broker and installs it globally where it owns the process.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if not otlp_endpoint:
            raise ConfigurationError(
                "TRAVI_TRACE_EXPORTER=otlp needs TRAVI_OTLP_ENDPOINT, "
                "for example http://127.0.0.1:4318/v1/traces"
            )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    elif exporter != "none":
        raise ConfigurationError(
            f"invalid TRAVI_TRACE_EXPORTER {exporter!r}: use none, console or otlp"
        )
    return provider
