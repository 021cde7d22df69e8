"""`/metrics` in the Prometheus text exposition format, served the same way by every
MRM process that has metrics (the inference proxy, the monitor).

Each process builds its own `CollectorRegistry` rather than using prometheus_client's
global one, so several servers (tests start many in one process) never share or
clash over metric names. The server is prometheus_client's own WSGI server in a
daemon thread: plain HTTP, no authentication, as Triton's and KServe's are. Put
nothing in a metric that a scraper may not see (model names and versions, counts
and durations only; never a subject or a feature value).
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


def parse_addr(addr: str) -> tuple[str, int]:
    """'host:port' as (host, port); ':8002' means every IPv4 interface, '[::1]:0' IPv6.

    >>> parse_addr(":8002")
    ('0.0.0.0', 8002)
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{addr!r} is not host:port (e.g. ':8002' or '127.0.0.1:0')")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"  # noqa: S104 (':port' means all)
    return host, int(port)


class MetricsServer:
    """A running `/metrics` endpoint (any path answers; `/metrics` is the convention)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        """The bound port (the free one chosen when the address said port 0)."""
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port; safe to call more than once."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


def start_metrics_server(addr: str, registry: CollectorRegistry) -> MetricsServer | None:
    """Serve `registry` on `addr` ('host:port'; port 0 picks a free one). An empty
    `addr` switches it off (None). Raises OSError when the address cannot be bound."""
    if not addr:
        return None
    host, port = parse_addr(addr)
    httpd, thread = start_http_server(port, host, registry)
    server = MetricsServer(httpd, thread)
    log.info("serving /metrics on %s (port %d)", addr, server.port)
    return server
