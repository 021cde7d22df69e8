"""mrm.core.prometheus: /metrics on a free port, closed cleanly; the proxy's collectors."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from mrm.core.prometheus import parse_addr, start_metrics_server
from mrm.proxy.metrics import Counts, InferenceMetrics, Snapshot, prometheus_registry
from mrm.proxy.workers import metrics_addr
from tests.support.prometheus import parse, scrape


def test_serves_its_own_registry_on_a_free_port_and_closes() -> None:
    registry = CollectorRegistry()
    Counter("mrm_test_things", "Things", registry=registry).inc(3)
    server = start_metrics_server("127.0.0.1:0", registry)
    assert server is not None
    try:
        assert server.port > 0
        assert scrape(server.port)["mrm_test_things_total"] == {(): 3.0}
    finally:
        server.close()
    server.close()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        scrape(server.port)


def test_two_servers_in_one_process_do_not_share_metrics() -> None:
    regs = [CollectorRegistry(), CollectorRegistry()]
    for i, reg in enumerate(regs):
        Counter("mrm_test_things", "Things", registry=reg).inc(i + 1)
    servers = [start_metrics_server("127.0.0.1:0", reg) for reg in regs]
    try:
        got = [scrape(s.port)["mrm_test_things_total"][()] for s in servers if s is not None]
        assert got == [1.0, 2.0]
    finally:
        for s in servers:
            if s is not None:
                s.close()


def test_empty_address_is_off_and_a_bad_one_is_refused() -> None:
    assert start_metrics_server("", CollectorRegistry()) is None
    for bad in ("8002", "host:", "host:port", ":70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_addr(bad)
    assert parse_addr(":8002") == ("0.0.0.0", 8002)
    assert parse_addr("[::1]:0") == ("::1", 0)
    assert parse_addr("localhost:9") == ("localhost", 9)


def test_a_taken_port_is_an_oserror() -> None:
    first = start_metrics_server("127.0.0.1:0", CollectorRegistry())
    assert first is not None
    try:
        with pytest.raises(OSError, match="already in use"):
            start_metrics_server(f"127.0.0.1:{first.port}", CollectorRegistry())
    finally:
        first.close()


def test_workers_serve_on_the_next_ports() -> None:
    assert metrics_addr(":8002", 1) == ":8003"
    assert metrics_addr("127.0.0.1:8002", 3) == "127.0.0.1:8005"
    assert metrics_addr("127.0.0.1:0", 2) == "127.0.0.1:0"
    assert metrics_addr("", 2) == ""


def test_the_proxy_registry_reads_the_snapshot_when_scraped() -> None:
    snaps = [
        Snapshot(
            totals=Counts(3, 2, 1, 1, 0),
            by_model={
                ("credit", "1.0.0"): Counts(2, 2, 0, 0, 0),
                ("fraud", "2.0.0"): Counts(1, 0, 1, 1, 0),
            },
            queue_depth=4,
            queue_capacity=100,
            spool_depth=5,
            spool_capacity=1000,
            gap_records_written=1,
            ledger_failures=7,
        )
    ]
    registry, inference = prometheus_registry(lambda: snaps[0])
    assert isinstance(inference, InferenceMetrics)
    inference.observe("credit", "1.0.0", True, 0.0004)
    inference.observe("credit", "1.0.0", True, 0.003)
    inference.observe("credit", "1.0.0", False, 2.0)
    got = parse(generate_latest(registry).decode())
    credit = (("model", "credit"), ("version", "1.0.0"))
    fraud = (("model", "fraud"), ("version", "2.0.0"))
    requests = got["mrm_proxy_inference_requests_total"]
    assert requests[(*credit[:1], ("outcome", "success"), credit[1])] == 2
    assert requests[(*credit[:1], ("outcome", "failure"), credit[1])] == 1
    assert got["mrm_proxy_inference_duration_seconds_count"] == {credit: 3}
    assert got["mrm_proxy_inference_duration_seconds_sum"][credit] == pytest.approx(2.0034)
    buckets = got["mrm_proxy_inference_duration_seconds_bucket"]
    assert buckets[(("le", "0.0005"), *credit)] == 1
    assert buckets[(("le", "0.005"), *credit)] == 2
    assert buckets[(("le", "+Inf"), *credit)] == 3
    assert got["mrm_proxy_samples_sampled_total"] == {credit: 2, fraud: 1}
    assert got["mrm_proxy_samples_dropped_total"] == {credit: 0, fraud: 1}
    assert got["mrm_proxy_samples_strict_failed_total"] == {credit: 0, fraud: 0}
    assert got["mrm_proxy_queue_depth"] == {(): 4}
    assert got["mrm_proxy_spool_capacity"] == {(): 1000}
    assert got["mrm_proxy_gap_records_written_total"] == {(): 1}
    assert got["mrm_proxy_ledger_failures_total"] == {(): 7}
    snaps[0] = Snapshot(Counts(), {}, 0, 100, 0, 1000, 0, 0)  # read anew at each scrape
    assert got != (again := parse(generate_latest(registry).decode()))
    assert "mrm_proxy_samples_sampled_total" not in again
