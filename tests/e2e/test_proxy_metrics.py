"""The proxy's /metrics: a Prometheus scrape agrees with the requests sent and with
the proxy's own status (GetProxyStatus)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import grpc
import pytest

from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.proxy.metrics import COUNTERS
from tests.support.inference import infer_request
from tests.support.prometheus import scrape
from tests.support.proxy_stack import (
    MODEL,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    status,
    wait_until,
)

SENT = 5


def test_a_scrape_counts_every_request_and_matches_the_status(
    tmp_path: Path, sqlite_url: str
) -> None:
    metrics_port = free_port()
    running = stack_with_ledger_on(
        tmp_path / "home", free_port(), sqlite_url, proxy_metrics_addr=f"127.0.0.1:{metrics_port}"
    )
    try:
        rows, name = deploy_gbt(running, tmp_path)
        with grpc.insecure_channel(running.proxy_addr) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(SENT):
                stub.ModelInfer(infer_request(MODEL, rows, name), timeout=30)
            with pytest.raises(grpc.RpcError) as refused:  # the model resolves; its input doesn't
                stub.ModelInfer(infer_request(MODEL, rows, "no-such-input"), timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        wait_until(
            lambda: status(running.proxy_addr).counters.shipped == SENT, "every sample shipped"
        )
        proxy = status(running.proxy_addr)
        got = scrape(metrics_port)
        (served,) = proxy.models
        labels = (("model", MODEL), ("version", served.version))
        requests = got["mrm_proxy_inference_requests_total"]
        outcomes = {dict(k)["outcome"]: v for k, v in requests.items() if dict(k)["model"] == MODEL}
        assert outcomes == {"success": SENT, "failure": 1}
        assert got["mrm_proxy_inference_duration_seconds_count"] == {labels: SENT + 1}
        assert got["mrm_proxy_inference_duration_seconds_bucket"][(("le", "+Inf"), *labels)] == (
            SENT + 1
        )
        for counter in COUNTERS:
            samples = got.get(f"mrm_proxy_samples_{counter}_total", {})
            assert samples == {labels: getattr(served.counters, counter)}, counter
        assert served.counters.sampled == SENT
        assert got["mrm_proxy_queue_depth"] == {(): proxy.queue_depth}
        assert got["mrm_proxy_queue_capacity"] == {(): proxy.queue_capacity}
        assert got["mrm_proxy_spool_depth"] == {(): proxy.spool_depth}
        assert got["mrm_proxy_spool_capacity"] == {(): proxy.spool_capacity}
        assert got["mrm_proxy_gap_records_written_total"] == {(): proxy.gap_records_written}
    finally:
        running.stack.stop()
    with pytest.raises(urllib.error.URLError):  # stopping the proxy closed its /metrics
        scrape(metrics_port)
