"""Wires the monitor from settings: its ledger and registry clients, the follower
loop (mrm.monitor.engine) in a worker thread, the gRPC servicer, `/metrics`, and
the webhook notifier (mrm.monitor.notify), which is told of an alert only after
the ledger has it: raised (after the window's append returned), acknowledged
(after the acknowledgement's), and again on every resume, when whatever a kill
kept from being sent is sent once (the outbox drops what was)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.core.keyfile import load_or_create_subject_key
from mrm.core.prometheus import MetricsServer, start_metrics_server
from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.kernel.subjects import SubjectHasher
from mrm.monitor.alerts import Alerts
from mrm.monitor.engine import Monitor, acknowledgement_of
from mrm.monitor.notify import Notifier, parse_webhooks
from mrm.monitor.outcome_servicer import OutcomeServicer
from mrm.monitor.outcomes import Outcomes
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
        self.live = Gauge(
            "mrm_monitor_live_metric",
            "Live accuracy, precision, recall and F1 of the latest window of outcomes",
            ["model", "version", "metric"],
            registry=registry,
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

    targets = parse_webhooks(settings.monitor_webhooks)
    notifier = (
        Notifier(targets, settings.home / "monitor-outbox.db", metrics_registry)
        if targets
        else None
    )

    def submit(alert_id: str, alert: dict[str, Any]) -> None:
        if notifier is not None:
            notifier.submit(alert_id, alert)  # never blocks: a hanging webhook stops nothing

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        instruments.alerts.labels(
            str(alert.get("model")), str(alert.get("version")), str(alert.get("rule"))
        ).inc()
        submit(alert_id, alert)

    monitor = Monitor(
        ledger,
        registry,
        notify=notify,
        report_link=f"{report_base(settings)}/reports/drift/{{model}}?version={{version}}",
    )
    metrics = start_metrics_server(settings.monitor_metrics_addr, metrics_registry)
    lock = threading.Lock()

    def resume() -> None:
        with lock:
            pending = monitor.resume()
        for alert_id, alert in pending:
            submit(alert_id, alert)

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
            for (model, version), live in monitor.live.items():
                for name, value in live.items():
                    instruments.live.labels(model, version, name).set(value)
            return n

    async def follow(stopping: asyncio.Event) -> None:
        resumed = False
        while not stopping.is_set():
            try:
                if not resumed:
                    await asyncio.to_thread(resume)
                    resumed = True
                n = await asyncio.to_thread(follow_once)
            except Exception as exc:  # the ledger is away: try again, never give up
                instruments.errors.inc()
                log.warning("monitor: %s; retrying", exc)
                resumed = False  # a half-judged window is judged again from the ledger
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

    alerts = Alerts(ledger)
    # Acknowledgements are told from a worker: the servicer's hook must not wait.
    acks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mrm-monitor-ack")

    def tell_acknowledged(alert_id: str) -> None:
        with lock:
            monitor.acknowledged(alert_id)
        if notifier is None:
            return
        try:
            view = alerts.get(alert_id)
        except Exception as exc:  # sent on the next resume instead
            log.warning("monitor: acknowledgement of %s not notified: %s", alert_id, exc)
            return
        if view.acknowledgement is not None:
            notifier.submit(alert_id, acknowledgement_of(alert_id, view.body, view.acknowledgement))

    def acknowledged(alert_id: str) -> None:
        acks.submit(tell_acknowledged, alert_id)

    def close() -> None:
        acks.shutdown(wait=False, cancel_futures=True)
        if notifier is not None:
            notifier.close(timeout=1.0)
        if metrics is not None:
            metrics.close()
        ledger.close()
        registry.close()

    servicer = MonitorServicer(alerts, on_acknowledged=acknowledged)
    subject_key = load_or_create_subject_key(settings.resolved_subject_key_file())
    outcomes = OutcomeServicer(Outcomes(ledger, registry, SubjectHasher(subject_key)))
    return MonitorApp(
        Service(
            name=SERVICE_NAME,
            also=(OutcomeServicer.SERVICE_NAME,),
            register=lambda server: _register(server, servicer, outcomes),
            ready=ready,
            background=[follow],
            close=close,
        ),
        monitor,
        metrics,
    )


def report_base(settings: Settings) -> str:
    """The reports' address as a person opens it: MRM_REPORT_BASE_URL, else MRM_HTTP_ADDR."""
    if settings.report_base_url:
        return settings.report_base_url.rstrip("/")
    host, _, port = settings.http_addr.rpartition(":")
    if host in ("", "[::]", "::", "0.0.0.0"):  # noqa: S104 (recognizing it, not binding)
        host = "localhost"
    scheme = "https" if settings.tls_cert_file is not None else "http"
    return f"{scheme}://{host}:{port}"


def _register(server: object, servicer: MonitorServicer, outcomes: OutcomeServicer) -> None:
    monitor_pb2_grpc.add_MonitorServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]
    monitor_pb2_grpc.add_OutcomeServiceServicer_to_server(outcomes, server)  # type: ignore[arg-type]
