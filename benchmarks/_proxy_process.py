"""The inference proxy alone in its own process, tracing on, for the serving benchmark.

Run by `benchmarks.proxy_serving` with the MRM_* variables set. Spans are really
created and ended: a TracerProvider with a BatchSpanProcessor whose exporter
drops them, so the cost measured is the SDK's, not a collector's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from mrm.core.auth import ServerAuth, service_auth
from mrm.core.server import GrpcServer, stop_on_signals
from mrm.core.settings import Settings
from mrm.proxy.app import proxy_service


class DropExporter(SpanExporter):
    """Accepts every batch and keeps nothing."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


async def serve(settings: Settings) -> None:
    stopping = stop_on_signals()
    server = GrpcServer(
        settings.proxy_addr,
        [
            proxy_service(
                settings,
                settings.registry_addr,
                settings.ledger_addr,
                service_auth(settings, "proxy"),
            )
        ],
        auth=ServerAuth.from_settings(settings),
        grace=settings.shutdown_grace,
        health_interval=settings.health_interval,
        max_message_bytes=settings.grpc_max_message_bytes,
        reuse_port=settings.reuse_port,
    )
    await server.start()
    await stopping.wait()
    await server.stop()


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    trace.set_tracer_provider(provider)  # setup_tracing() keeps an installed provider
    asyncio.run(serve(Settings()))
    provider.shutdown()


if __name__ == "__main__":
    main()
