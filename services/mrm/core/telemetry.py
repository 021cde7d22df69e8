"""OpenTelemetry setup shared by every MRM process.

Exporters follow the standard OTEL_* variables: set OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_TRACES_EXPORTER=otlp) and spans go to an OTLP collector such as Jaeger.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def setup_tracing(service_name: str) -> TracerProvider:
    """A tracer provider for this process; installs it globally once."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
