"""OpenTelemetry setup shared by every MRM process: traces and metrics.

Configured with the standard OTEL_* variables, read when a server starts (never
at import):

- OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: a comma-separated list of
  `otlp`, `console` or `none`. Unset, a signal is exported over OTLP when an
  OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or the signal's own
  OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT) and not at all otherwise.
- OTLP goes over gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc, the only protocol
  installed); the exporter itself reads the endpoint, headers, timeout,
  certificates and compression variables, so Jaeger or any collector works.
- OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the process (default
  service.name: the name the server passes, "mrm").
- OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG pick the span sampler (the
  SDK's default: parentbased_always_on). A span the sampler drops still has a
  valid trace id, which the proxy stamps on responses and records.
- OTEL_BSP_* tune span batching; OTEL_METRIC_EXPORT_INTERVAL (ms, default
  60000) the metric export period. OTEL_SDK_DISABLED=true exports nothing.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

log = logging.getLogger(__name__)
_KNOWN = {"otlp", "console"}


def resource(service_name: str) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES first, then `service_name`."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: service_name}))
    return detected


def exporters(signal: str) -> list[str]:
    """The exporters wanted for `signal` ("traces" or "metrics"), per the OTEL_* variables."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    if raw is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    for name in sorted(set(names) - _KNOWN - {"none"}):
        log.warning("OTEL_%s_EXPORTER: %r is not supported (otlp, console, none)", signal, name)
    if "none" in names:
        return []
    protocol = os.environ.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    )
    if "otlp" in names and protocol != "grpc":
        log.warning("OTLP protocol %r is not installed; exporting %s over grpc", protocol, signal)
    return [n for n in dict.fromkeys(names) if n in _KNOWN]


def setup_tracing(service_name: str) -> TracerProvider:
    """A tracer provider for this process; installs it globally once."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=resource(service_name))  # sampler: OTEL_TRACES_SAMPLER
    for name in exporters("traces"):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def setup_metrics(service_name: str) -> MeterProvider:
    """A meter provider for this process; installs it globally once.

    Without an exporter it has no reader, so observable instruments are never
    called: metrics then cost nothing.
    """
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        return current
    readers: list[MetricReader] = []
    for name in exporters("metrics"):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        else:
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    provider = MeterProvider(metric_readers=readers, resource=resource(service_name))
    metrics.set_meter_provider(provider)
    return provider
