"""The trace link, through OTLP: a proxy process configured only by OTEL_* variables
exports its spans and metrics to an in-process OTLP receiver (a real gRPC server
speaking opentelemetry.proto.collector.*.v1), and span and ledger record name
each other. When span sampling drops the span, the trace id is still stamped."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mpb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tpb_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from mrm.client.errors import NotFound
from mrm.client.ledger import LedgerClient, Record
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import RunningLedger
from tests.support.inference import infer_request
from tests.support.proxy_stack import (
    MODEL,
    ProxyProcess,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    wait_model_ready,
    wait_until,
)

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
UNSAMPLED_TRACE = "0af7651916cd43dd8448eb211c80319c"


def _attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


class _Traces(tpb_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: tpb.ExportTraceServiceRequest, context: Any) -> Any:
        with self.receiver.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    self.receiver.spans += [(_attrs(rs.resource.attributes), s) for s in ss.spans]
        return tpb.ExportTraceServiceResponse()


class _Metrics(mpb_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: mpb.ExportMetricsServiceRequest, context: Any) -> Any:
        with self.receiver.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        points = metric.sum.data_points or metric.gauge.data_points
                        for p in points:
                            key = (metric.name, tuple(sorted(_attrs(p.attributes).items())))
                            self.receiver.metrics[key] = p.as_int
        return mpb.ExportMetricsServiceResponse()


class Receiver:
    """An OTLP/gRPC collector on a free port that keeps what it is sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[dict[str, str], Span]] = []
        self.metrics: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._pool = ThreadPoolExecutor(4)
        self.server = grpc.server(self._pool)
        tpb_grpc.add_TraceServiceServicer_to_server(_Traces(self), self.server)  # type: ignore[no-untyped-call]
        mpb_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(None).wait()
        self._pool.shutdown()

    def span(self, record_id: str) -> tuple[dict[str, str], Span] | None:
        with self.lock:
            found = [
                s for s in self.spans if _attrs(s[1].attributes).get("mrm.record_id") == record_id
            ]
        assert len(found) <= 1, found
        return found[0] if found else None

    def trace_ids(self) -> set[str]:
        with self.lock:
            return {s.trace_id.hex() for _, s in self.spans}

    def metric(self, name: str, **attrs: str) -> int | None:
        with self.lock:
            return self.metrics.get((name, tuple(sorted(attrs.items()))))


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def otlp_stack(tmp_path: Path, pg_url: str) -> Any:
    stack = stack_with_ledger_on(tmp_path / "home", free_port(), pg_url)
    yield stack
    stack.stack.stop()


def otel_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_SERVICE_NAME": "mrm-proxy-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    } | extra


def infer(addr: str, request: oip.ModelInferRequest, traceparent: str = "") -> tuple[str, str]:
    """(trace_id, mrm_record_id) from the response's parameters."""
    metadata = (("traceparent", traceparent),) if traceparent else ()
    with grpc.insecure_channel(addr) as channel:
        reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=metadata, timeout=30
        )
    params = reply.parameters
    return params["trace_id"].string_param, params["mrm_record_id"].string_param


def ledger_record(otlp_stack: RunningLedger, record_id: str) -> Record:
    """The record once the proxy's shipper has delivered it."""
    with LedgerClient(otlp_stack.addr) as ledger:

        def landed() -> bool:
            try:
                ledger.get_record(record_id)
            except NotFound:
                return False
            return True

        wait_until(landed, f"record {record_id} is in the ledger")
        return ledger.get_record(record_id)


def test_the_exported_span_and_the_record_name_each_other(
    receiver: Receiver, otlp_stack: RunningLedger, tmp_path: Path
) -> None:
    rows, input_name = deploy_gbt(otlp_stack, tmp_path)
    request = infer_request(MODEL, rows, input_name)
    proxy = ProxyProcess(
        tmp_path / "proxy", otlp_stack.registry_addr, otlp_stack.addr, otel_env(receiver)
    )
    try:
        wait_model_ready(proxy.addr)
        # parentbased sampling and a caller that did not sample: no span, same trace id.
        quiet_trace, quiet_id = infer(proxy.addr, request, f"00-{UNSAMPLED_TRACE}-{CALLER_SPAN}-00")
        trace_id, record_id = infer(proxy.addr, request, f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        wait_until(lambda: receiver.span(record_id) is not None, "the span is exported")
        labels = {"mrm.model": MODEL, "mrm.model_version": "1.0.0"}
        wait_until(
            lambda: receiver.metric("mrm.proxy.samples.shipped", **labels) == 2,
            "the shipped counter is exported",
        )
        assert receiver.metric("mrm.proxy.samples.sampled", **labels) == 2
        assert receiver.metric("mrm.proxy.samples.dropped", **labels) == 0
        assert receiver.metric("mrm.proxy.spool.depth") == 0
    finally:
        proxy.close()
    found = receiver.span(record_id)
    assert found is not None
    resource, span = found
    assert resource["service.name"] == "mrm-proxy-e2e"
    assert trace_id == CALLER_TRACE
    assert span.trace_id.hex() == CALLER_TRACE  # continues the caller's trace
    assert span.parent_span_id.hex() == CALLER_SPAN
    attrs = _attrs(span.attributes)
    assert (attrs["mrm.model"], attrs["mrm.model_version"]) == (MODEL, "1.0.0")
    rec = ledger_record(otlp_stack, record_id)
    assert (rec.trace_id, rec.span_id) == (CALLER_TRACE, span.span_id.hex())
    # The unsampled decision: the caller's trace id on the response and the record, no span.
    assert quiet_trace == UNSAMPLED_TRACE
    quiet = ledger_record(otlp_stack, quiet_id)
    assert quiet.trace_id == UNSAMPLED_TRACE
    assert len(quiet.span_id) == 16
    assert UNSAMPLED_TRACE not in receiver.trace_ids()


def test_with_span_sampling_off_the_trace_id_is_still_stamped(
    receiver: Receiver, otlp_stack: RunningLedger, tmp_path: Path
) -> None:
    rows, input_name = deploy_gbt(otlp_stack, tmp_path)
    request = infer_request(MODEL, rows, input_name)
    env = otel_env(receiver, OTEL_TRACES_SAMPLER="always_off")
    proxy = ProxyProcess(tmp_path / "proxy", otlp_stack.registry_addr, otlp_stack.addr, env)
    try:
        wait_model_ready(proxy.addr)
        trace_id, record_id = infer(proxy.addr, request)  # no traceparent: a new trace
        traced_id, traced_record = infer(proxy.addr, request, f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        labels = {"mrm.model": MODEL, "mrm.model_version": "1.0.0"}
        wait_until(  # metrics still flow: the exporter works, only spans are off
            lambda: receiver.metric("mrm.proxy.samples.shipped", **labels) == 2,
            "the shipped counter is exported",
        )
    finally:
        proxy.close()
    assert len(trace_id) == 32
    assert int(trace_id, 16) != 0
    assert traced_id == CALLER_TRACE
    assert ledger_record(otlp_stack, record_id).trace_id == trace_id
    assert ledger_record(otlp_stack, traced_record).trace_id == CALLER_TRACE
    assert not receiver.trace_ids()  # always_off: no span was exported at all
