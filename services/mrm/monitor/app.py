"""Wires the monitor from settings: its ledger and registry clients, the follower
loop (mrm.monitor.engine) in a worker thread, the gRPC servicer and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.core.prometheus import MetricsServer, start_metrics_server
from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.monitor.alerts import Alerts
from mrm.monitor.engine import Monitor
from mrm.monitor.servicer import MonitorServicer
from mrm.v1 import monitor_pb2, monitor_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


@dataclass
class MonitorApp:
    service: Service
    monitor: Monitor
    metrics: MetricsServer | None

    @property
    def metrics_port(self) -> int:
        return self.metrics.port if self.metrics is not None else 0


class _Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "mrm_monitor_records", "PREDICTION records the monitor read", registry=registry
        )
        self.windows = Counter(
            "mrm_monitor_windows", "Windows evaluated (DRIFT records)", registry=registry
        )
        self.alerts = Counter(
            "mrm_monitor_alerts",
            "ALERT records raised",
            ["model", "version", "rule"],
            registry=registry,
        )
        self.psi = Gauge(
            "mrm_monitor_feature_drift_psi",
            "PSI of each feature in the latest evaluated window",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.errors = Counter(
            "mrm_monitor_follow_errors", "Failed reads or appends (retried)", registry=registry
        )
        self.lag = Gauge(
            "mrm_monitor_lag_records",
            "Records read in the last poll that found more waiting (0 when caught up)",
            registry=registry,
        )


def monitor_service(
    settings: Settings, registry_target: str, ledger_target: str, auth: ClientAuth
) -> MonitorApp:
    """`auth` is the monitor's own credential (role monitor)."""
    ledger = LedgerClient(ledger_target, timeout=30.0, auth=auth)
    registry = RegistryClient(registry_target, timeout=60.0, auth=auth)
    metrics_registry = CollectorRegistry()
    instruments = _Instruments(metrics_registry)

    def notify(alert_id: str, alert: dict[str, object]) -> None:
        instruments.alerts.labels(
            str(alert.get("model")), str(alert.get("version")), str(alert.get("rule"))
        ).inc()

    monitor = Monitor(ledger, registry, notify=notify)
    metrics = start_metrics_server(settings.monitor_metrics_addr, metrics_registry)
    lock = threading.Lock()

    def follow_once() -> int:
        with lock:
            before = monitor.evaluated
            n = monitor.step()
            instruments.processed.inc(n)
            instruments.windows.inc(monitor.evaluated - before)
            instruments.lag.set(n if n == monitor.page_size else 0)
            for (model, version), report in monitor.latest.items():
                for f in report.features:
                    if f.psi is not None:
                        instruments.psi.labels(model, version, f.name).set(f.psi)
            return n

    async def follow(stopping: asyncio.Event) -> None:
        resumed = False
        while not stopping.is_set():
            try:
                if not resumed:
                    await asyncio.to_thread(monitor.resume)
                    resumed = True
                n = await asyncio.to_thread(follow_once)
            except Exception as exc:  # the ledger is away: try again, never give up
                instruments.errors.inc()
                log.warning("monitor: %s; retrying", exc)
                n = 0
            if n < monitor.page_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), settings.monitor_poll_interval)

    def dependencies_answer() -> bool:
        try:
            ledger.checkpoint()
            return True
        except Exception:  # any failure means: cannot monitor now
            return False

    async def ready() -> bool:
        return await asyncio.to_thread(dependencies_answer)

    def close() -> None:
        if metrics is not None:
            metrics.close()
        ledger.close()
        registry.close()

    servicer = MonitorServicer(Alerts(ledger), on_acknowledged=monitor.acknowledged)
    return MonitorApp(
        Service(
            name=SERVICE_NAME,
            register=lambda server: _register(server, servicer),
            ready=ready,
            background=[follow],
            close=close,
        ),
        monitor,
        metrics,
    )


def _register(server: object, servicer: MonitorServicer) -> None:
    monitor_pb2_grpc.add_MonitorServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]
