"""The proxy's delivery counters, kept exactly, and their OpenTelemetry and Prometheus
metrics.

The shipper counts every sampled record once in `Tally` as it moves (sampled,
then shipped, spooled, dropped or strict_failed), per model and version,
under one lock. The counts are exact, not estimates: the dropped count is the
sum of the `dropped` fields of the GAP records the process writes for them.
`Snapshot` is what GetProxyStatus and the metrics read.

Metrics (observable instruments, read only when an exporter collects, so they
cost nothing on the inference path), with `mrm.model` and
`mrm.model_version` attributes where a count belongs to a model:

    mrm.proxy.samples.sampled | shipped | spooled | dropped | strict_failed   counters
    mrm.proxy.queue.depth, mrm.proxy.spool.depth                            gauges
    mrm.proxy.gap_records.written, mrm.proxy.ledger.failures                counters
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mrm.v1.ledger_pb2 import Record

COUNTERS = ("sampled", "shipped", "spooled", "dropped", "strict_failed")
_DESCRIPTIONS = {
    "sampled": "Decisions chosen for the audit trail",
    "shipped": "Audit records the ledger acknowledged",
    "spooled": "Audit records written to the local spool while the ledger was away or slow",
    "dropped": "Audit records given up on; each is reported in a GAP record",
    "strict_failed": "Strict-mode decisions failed because their record could not be made durable",
}


@dataclass(frozen=True)
class Counts:
    """Records by what became of them (see mrm.v1.DeliveryCounters)."""

    sampled: int = 0
    shipped: int = 0
    spooled: int = 0
    dropped: int = 0
    strict_failed: int = 0


@dataclass(frozen=True)
class Snapshot:
    """The shipper's state at one moment."""

    totals: Counts
    by_model: Mapping[tuple[str, str], Counts]  # (model name, version) -> counts
    queue_depth: int
    queue_capacity: int
    spool_depth: int
    spool_capacity: int
    gap_records_written: int
    ledger_failures: int  # delivery attempts that failed for want of the ledger
    last_ledger_error: str = ""
    last_ledger_error_at: datetime | None = None
    last_ledger_success_at: datetime | None = None


@dataclass
class Tally:
    """Thread-safe counts per (counter, model, version), plus the shipper's own."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    gap_records_written: int = 0
    ledger_failures: int = 0

    def add(self, counter: str, model: str, version: str, n: int = 1) -> None:
        i = COUNTERS.index(counter)
        with self._lock:
            row = self._counts.get((model, version))
            if row is None:
                row = self._counts[model, version] = [0] * len(COUNTERS)
            row[i] += n

    def add_records(self, counter: str, records: Iterable[Record]) -> None:
        """Count each record under its own model and version."""
        per: dict[tuple[str, str], int] = {}
        for rec in records:
            key = (rec.model_name, rec.model_version)
            per[key] = per.get(key, 0) + 1
        for (model, version), n in per.items():
            self.add(counter, model, version, n)

    def add_own(self, name: str, n: int = 1) -> None:
        """gap_records_written or ledger_failures."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def counts(self) -> tuple[Counts, dict[tuple[str, str], Counts]]:
        """(totals, per model and version), read atomically."""
        with self._lock:
            rows = {key: list(row) for key, row in self._counts.items()}
        totals = [sum(col) for col in zip(*rows.values(), strict=True)] or [0] * len(COUNTERS)
        return Counts(*totals), {key: Counts(*row) for key, row in rows.items()}


def _model_attrs(key: tuple[str, str]) -> dict[str, str]:
    return {"mrm.model": key[0], "mrm.model_version": key[1]}


_Ref = Callable[[], Callable[[], Snapshot] | None]


class ProxyMetrics:
    """The proxy's instruments on one meter, reading the shipper's snapshot when collected.

    Use `register`: the SDK keeps the first instrument of a name for good, so a
    meter gets one set, and each new source (another proxy started in the same
    process, as tests do) takes over from the one before. Sources are held
    weakly: a stopped proxy is not kept alive, and reports nothing once gone.
    """

    _by_meter: ClassVar[weakref.WeakKeyDictionary[Meter, ProxyMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def register(cls, meter: Meter, source: Callable[[], Snapshot]) -> ProxyMetrics:
        metrics = cls._by_meter.get(meter)
        if metrics is None:
            metrics = cls._by_meter[meter] = cls(meter)
        ref: _Ref = weakref.WeakMethod(source) if inspect.ismethod(source) else lambda: source
        metrics._sources = [r for r in metrics._sources if r() is not None] + [ref]
        return metrics

    def __init__(self, meter: Meter) -> None:
        self._sources: list[_Ref] = []
        for name in COUNTERS:
            meter.create_observable_counter(
                f"mrm.proxy.samples.{name}",
                callbacks=[self._per_model(name)],
                unit="{record}",
                description=_DESCRIPTIONS[name],
            )
        gauges = {
            "mrm.proxy.queue.depth": ("queue_depth", "Audit records waiting in memory"),
            "mrm.proxy.spool.depth": ("spool_depth", "Audit records waiting in the spool"),
        }
        for metric, (attr, text) in gauges.items():
            meter.create_observable_gauge(
                metric, callbacks=[self._scalar(attr)], unit="{record}", description=text
            )
        meter.create_observable_counter(
            "mrm.proxy.gap_records.written",
            callbacks=[self._scalar("gap_records_written")],
            unit="{record}",
            description="GAP records the ledger acknowledged",
        )
        meter.create_observable_counter(
            "mrm.proxy.ledger.failures",
            callbacks=[self._scalar("ledger_failures")],
            unit="{attempt}",
            description="Deliveries that failed because the ledger was unreachable",
        )

    def _snapshot(self) -> Snapshot | None:
        """From the newest source still alive."""
        for ref in reversed(self._sources):
            source = ref()
            if source is not None:
                return source()
        return None

    def _per_model(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(_: CallbackOptions) -> Iterator[Observation]:
            snap = self._snapshot()
            if snap is not None:
                for key, counts in snap.by_model.items():
                    yield Observation(getattr(counts, name), _model_attrs(key))

        return observe

    def _scalar(self, attr: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(_: CallbackOptions) -> Iterator[Observation]:
            snap = self._snapshot()
            if snap is not None:
                yield Observation(getattr(snap, attr))

        return observe


# Prometheus (`/metrics`, mrm.core.prometheus). The delivery counts are read from the
# same Snapshot at scrape time; only the per-request metrics below touch the hot path.
#
#   mrm_proxy_inference_requests_total{model,version,outcome}   counter (success|failure)
#   mrm_proxy_inference_duration_seconds{model,version}          histogram
#   mrm_proxy_samples_<sampled|shipped|...>_total{model,version}  counters (Tally)
#   mrm_proxy_queue_depth, mrm_proxy_queue_capacity,
#   mrm_proxy_spool_depth, mrm_proxy_spool_capacity              gauges
#   mrm_proxy_gap_records_written_total, mrm_proxy_ledger_failures_total  counters

# From a small tree ensemble's tens of microseconds to a large batch's seconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


class InferenceMetrics:
    """Requests and their latency per model and version, on one registry.

    The labelled children are looked up once per (model, version) and kept, so a
    request costs one counter increment and one histogram observation. Requests for
    a model or version that does not resolve are not counted here: their names come
    from the caller, and counting them would let any caller add series.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "mrm_proxy_inference_requests",
            "ModelInfer calls by model, version and outcome (success or failure)",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "mrm_proxy_inference_duration_seconds",
            "Seconds from receiving a ModelInfer call to its response, strict writes included",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Counter, Histogram]] = {}

    def observe(self, model: str, version: str, ok: bool, seconds: float) -> None:
        children = self._children.get((model, version))
        if children is None:
            children = self._children[model, version] = (
                self._requests.labels(model, version, "success"),
                self._requests.labels(model, version, "failure"),
                self._duration.labels(model, version),
            )
        success, failure, duration = children
        (success if ok else failure).inc()
        duration.observe(seconds)


class DeliveryCollector(Collector):
    """The shipper's Snapshot as Prometheus metrics, read when scraped."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        for name in COUNTERS:
            family = CounterMetricFamily(
                f"mrm_proxy_samples_{name}", _DESCRIPTIONS[name], labels=["model", "version"]
            )
            for (model, version), counts in sorted(snap.by_model.items()):
                family.add_metric([model, version], getattr(counts, name))
            yield family
        gauges = {
            "queue_depth": "Audit records waiting in memory",
            "queue_capacity": "Audit records the in-memory queue holds (MRM_PROXY_QUEUE_MAX)",
            "spool_depth": "Audit records waiting in the spool",
            "spool_capacity": "Audit records the spool holds (MRM_PROXY_SPOOL_MAX_RECORDS)",
        }
        for attr, text in gauges.items():
            yield GaugeMetricFamily(f"mrm_proxy_{attr}", text, value=getattr(snap, attr))
        yield CounterMetricFamily(
            "mrm_proxy_gap_records_written",
            "GAP records the ledger acknowledged",
            value=snap.gap_records_written,
        )
        yield CounterMetricFamily(
            "mrm_proxy_ledger_failures",
            "Deliveries that failed because the ledger was unreachable",
            value=snap.ledger_failures,
        )


def prometheus_registry(
    source: Callable[[], Snapshot],
) -> tuple[CollectorRegistry, InferenceMetrics]:
    """A registry of this proxy's own: its requests, its deliveries, its process."""
    registry = CollectorRegistry()
    inference = InferenceMetrics(registry)
    registry.register(DeliveryCollector(source))
    ProcessCollector(registry=registry)
    return registry, inference
