"""The proxy's delivery counters: exact under concurrency, exported as OTel instruments."""

from __future__ import annotations

import gc
import threading
from dataclasses import fields
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mrm.client.ledger import new_record
from mrm.proxy.metrics import COUNTERS, Counts, ProxyMetrics, Snapshot, Tally


def test_counters_match_the_counts_dataclass() -> None:
    assert tuple(f.name for f in fields(Counts)) == COUNTERS


def test_tally_is_exact_under_concurrent_adds() -> None:
    tally, threads_n, per_thread = Tally(), 8, 4000
    start = threading.Barrier(threads_n)

    def work(i: int) -> None:
        start.wait()
        for j in range(per_thread):
            tally.add("sampled", f"m{i % 2}", "1.0.0")
            tally.add(("shipped", "dropped")[j % 2], f"m{i % 2}", "1.0.0")
            tally.add_own("ledger_failures")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals, by_model = tally.counts()
    n = threads_n * per_thread
    assert totals == Counts(sampled=n, shipped=n // 2, dropped=n // 2)
    assert by_model == {
        ("m0", "1.0.0"): Counts(sampled=n // 2, shipped=n // 4, dropped=n // 4),
        ("m1", "1.0.0"): Counts(sampled=n // 2, shipped=n // 4, dropped=n // 4),
    }
    assert tally.ledger_failures == n


def test_records_are_counted_under_their_own_model_and_version() -> None:
    tally = Tally()
    records = [
        new_record("PREDICTION", {}, model_name="a", model_version="1.0.0"),
        new_record("PREDICTION", {}, model_name="a", model_version="2.0.0"),
        new_record("PREDICTION", {}, model_name="a", model_version="2.0.0"),
    ]
    tally.add_records("spooled", iter(records))
    totals, by_model = tally.counts()
    assert totals == Counts(spooled=3)
    assert by_model == {("a", "1.0.0"): Counts(spooled=1), ("a", "2.0.0"): Counts(spooled=2)}
    assert Tally().counts() == (Counts(), {})


def snapshot(**over: Any) -> Snapshot:
    base: dict[str, Any] = {
        "totals": Counts(sampled=7, shipped=4, spooled=3, dropped=2, strict_failed=1),
        "by_model": {
            ("gbt", "1.0.0"): Counts(sampled=5, shipped=4, dropped=1),
            ("gbt", "1.1.0"): Counts(sampled=2, spooled=3, dropped=1, strict_failed=1),
        },
        "queue_depth": 11,
        "queue_capacity": 100,
        "spool_depth": 13,
        "spool_capacity": 1000,
        "gap_records_written": 17,
        "ledger_failures": 19,
    }
    return Snapshot(**(base | over))


def collected(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = out.setdefault(metric.name, [])
                for p in metric.data.data_points:
                    points.append((dict(p.attributes or {}), p.value))  # type: ignore[union-attr]
    return out


def test_instruments_report_the_snapshot_with_model_attributes() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    snap = snapshot()
    ProxyMetrics.register(provider.get_meter("test"), lambda: snap)
    got = collected(reader)
    provider.shutdown()
    for name in COUNTERS:
        expected = [
            ({"mrm.model": m, "mrm.model_version": v}, getattr(c, name))
            for (m, v), c in snap.by_model.items()
        ]
        assert sorted(got[f"mrm.proxy.samples.{name}"], key=str) == sorted(expected, key=str)
    assert got["mrm.proxy.queue.depth"] == [({}, 11)]
    assert got["mrm.proxy.spool.depth"] == [({}, 13)]
    assert got["mrm.proxy.gap_records.written"] == [({}, 17)]
    assert got["mrm.proxy.ledger.failures"] == [({}, 19)]


class _Owner:
    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self) -> Snapshot:
        self.calls += 1
        return snapshot()


def test_a_gone_shipper_is_neither_kept_alive_nor_reported() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    owner = _Owner()
    ProxyMetrics.register(provider.get_meter("test"), owner.snapshot)
    assert collected(reader)["mrm.proxy.spool.depth"] == [({}, 13)]
    assert owner.calls > 0
    del owner
    gc.collect()
    assert all(not points for points in collected(reader).values())
    provider.shutdown()


def test_a_second_proxy_in_the_process_takes_over_the_instruments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    first, second = _Owner(), _Owner()
    assert ProxyMetrics.register(meter, first.snapshot) is ProxyMetrics.register(
        meter, second.snapshot
    )
    assert "created already" not in caplog.text  # one set of instruments per meter
    collected(reader)
    assert (first.calls, second.calls > 0) == (0, True)
    del second
    gc.collect()
    collected(reader)
    assert first.calls > 0  # the older one, still alive, is reported again
    provider.shutdown()
