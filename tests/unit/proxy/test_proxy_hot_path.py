"""The proxy's request path with a real ONNX model and a real tracer, no network:
records built off the path, one span per decision, strict decisions, bad input."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import make_classification  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped,unused-ignore]

from mrm.core.errors import InvalidArgument, NotFound, Unavailable
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.proxy.audit import PendingPrediction, Stamper
from mrm.proxy.models import ModelTable, ServingModel, build
from mrm.proxy.server import InferenceServicer
from mrm.proxy.shipper import AuditUnavailable, Shipper
from mrm.proxy.spool import Spool
from mrm.v1 import ledger_pb2
from tests.support.proxy_fakes import Sink

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def onnx_model() -> tuple[bytes, bytes, Any, np.ndarray[Any, Any]]:
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    features = [{"name": f"f{i}", "position": i, "dtype": "float"} for i in range(5)]
    schema = json.dumps({"mode": "tensor", "features": features}).encode()
    return onx.SerializeToString(), schema, model, X[:3].astype(np.float32)


def serving(onnx_model: Any, version: str, *, rate: float = 1.0, strict: bool = False) -> Any:
    data, schema, _, _ = onnx_model
    return build("m", version, "STAGING", rate, data, "a" * 64, schema, strict=strict)


class Watcher:
    def __init__(self, *models: ServingModel) -> None:
        self.table = ModelTable()
        for m in models:
            self.table = self.table.with_model(m)


class Context:
    def __init__(self, traceparent: str = "") -> None:
        self.metadata = (("traceparent", traceparent),) if traceparent else ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def servicer_with(
    sink: Sink, provider_spans: InMemorySpanExporter | None, *models: ServingModel
) -> InferenceServicer:
    tracer = None
    if provider_spans is not None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(provider_spans))
        tracer = provider.get_tracer("test")
    return InferenceServicer(Watcher(*models), Stamper(b"k" * 32), sink, tracer=tracer)  # type: ignore[arg-type]


def request(rows: np.ndarray[Any, Any], version: str, input_name: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(
        model_name="m",
        model_version=version,
        id="req-1",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=input_name, datatype="FP32", shape=list(rows.shape)
            )
        ],
        raw_input_contents=[rows.tobytes()],
    )
    req.parameters["subject_id"].string_param = "applicant-7"
    return req


def run(svc: InferenceServicer, req: pb.ModelInferRequest, ctx: Context) -> Any:
    try:
        return asyncio.run(svc.ModelInfer(req, ctx))  # type: ignore[arg-type]
    finally:
        svc.close()


def test_the_record_is_built_off_the_path_with_the_exact_decision(
    onnx_model: Any, spans: InMemorySpanExporter
) -> None:
    m = serving(onnx_model, "1.0.0")
    sink, rows = Sink(), onnx_model[3]
    svc = servicer_with(sink, spans, m)
    reply = run(
        svc, request(rows, "1.0.0", m.inputs[0].name), Context(f"00-{TRACE}-{CALLER_SPAN}-01")
    )
    record_id = reply.parameters["mrm_record_id"].string_param
    assert reply.parameters["trace_id"].string_param == TRACE
    [pending] = sink.offered  # handed over unbuilt: no JSON was made on the request path
    assert isinstance(pending, PendingPrediction)
    rec = pending.record()
    assert (rec.record_id, rec.model_name, rec.model_version) == (record_id, "m", "1.0.0")
    assert rec.subject.startswith("hmac-sha256:")
    assert "applicant-7" not in rec.SerializeToString().decode(errors="replace")
    body = json.loads(rec.body_json)
    np.testing.assert_allclose(body["request"]["inputs"][m.inputs[0].name], rows)
    assert body["response"]["label"] == onnx_model[2].predict(rows).tolist()
    assert body["request"]["id"] == "req-1"
    [span] = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert (attrs["mrm.model"], attrs["mrm.model_version"], attrs["mrm.record_id"]) == (
        "m",
        "1.0.0",
        record_id,
    )
    assert format(span.context.trace_id, "032x") == TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == CALLER_SPAN
    assert rec.span_id == format(span.context.span_id, "016x")


def test_unsampled_decisions_are_stamped_but_not_recorded(onnx_model: Any) -> None:
    m = serving(onnx_model, "1.0.0", rate=0.0)
    sink = Sink()
    reply = run(
        servicer_with(sink, None, m), request(onnx_model[3], "1.0.0", m.inputs[0].name), Context()
    )
    assert "mrm_record_id" not in reply.parameters
    assert len(reply.parameters["trace_id"].string_param) == 32  # a new trace, even untraced
    assert not sink.offered


def test_a_strict_decision_waits_for_a_durable_record(onnx_model: Any) -> None:
    m = serving(onnx_model, "2.0.0", rate=0.25, strict=True)
    assert (m.strict, m.sample_rate) == (True, 1.0)  # strict records every decision
    sink = Sink()
    reply = run(
        servicer_with(sink, None, m), request(onnx_model[3], "2.0.0", m.inputs[0].name), Context()
    )
    [rec] = sink.strict
    assert rec.record_id == reply.parameters["mrm_record_id"].string_param
    assert not sink.offered


def test_a_strict_decision_that_cannot_be_recorded_is_not_served(onnx_model: Any) -> None:
    m = serving(onnx_model, "2.0.0", strict=True)
    svc = servicer_with(Sink("the spool is full"), None, m)
    with pytest.raises(Unavailable, match=r"m 2\.0\.0 is strict .*the spool is full.*not served"):
        run(svc, request(onnx_model[3], "2.0.0", m.inputs[0].name), Context())


def test_bad_requests_record_nothing(onnx_model: Any, spans: InMemorySpanExporter) -> None:
    m = serving(onnx_model, "1.0.0")
    sink, rows = Sink(), onnx_model[3]
    unknown_output = request(rows, "1.0.0", m.inputs[0].name)
    unknown_output.outputs.add(name="nope")
    nan = rows.copy()
    nan[0, 0] = np.nan
    for req, error in [
        (unknown_output, InvalidArgument),
        (request(nan, "1.0.0", m.inputs[0].name), InvalidArgument),
        (request(rows, "1.0.0", "wrong"), InvalidArgument),
        (request(rows, "9.9.9", m.inputs[0].name), NotFound),
    ]:
        with pytest.raises(error):
            run(servicer_with(sink, spans, m), req, Context())
    assert not sink.offered
    failed = spans.get_finished_spans()  # the three that reached the model are traced
    assert len(failed) == 3
    assert all(s.status.status_code.name == "ERROR" for s in failed)


def test_the_shipper_builds_samples_and_counts_one_it_cannot(tmp_path: Path) -> None:
    class Broken:
        model_name, model_version = "m", "1.0.0"

        def record(self) -> ledger_pb2.Record:
            raise ValueError("cannot be encoded")

    # Nothing listens on port 9: every append fails and the records go to the spool.
    shipper = Shipper("127.0.0.1:9", Spool(tmp_path / "spool.db", 100), flush_interval=0.01)
    try:
        good = PendingPrediction(
            Stamper(b"k" * 32), "01a223c0-4138-71ff-a7eb-5b111843d9ee", "m", "1.0.0", "a" * 64,
            "s", TRACE, CALLER_SPAN, {"x": np.zeros((1, 2), np.float32)},
            {"label": np.array([1])}, "",
        )  # fmt: skip
        assert shipper.offer(good)
        assert shipper.offer(Broken())
        end = time.monotonic() + 30
        while shipper.counters()["spooled"] + shipper.counters()["dropped"] < 2:
            assert time.monotonic() < end, shipper.counters()
            time.sleep(0.01)
        [spooled] = shipper.spool.peek(10)
        assert spooled.record_id == good.record_id
        assert json.loads(spooled.body_json)["request"]["inputs"] == {"x": [[0.0, 0.0]]}
        assert shipper.counters()["dropped"] == 1
    finally:
        shipper.close(timeout=1)


def test_strict_offer_spools_when_the_ledger_is_away_and_fails_when_full(tmp_path: Path) -> None:
    shipper = Shipper("127.0.0.1:9", Spool(tmp_path / "spool.db", 1))
    try:
        first = PendingPrediction(
            Stamper(b"k" * 32), "01a223c0-4138-71ff-a7eb-5b111843d9ee", "m", "1.0.0", "a" * 64,
            "", TRACE, CALLER_SPAN, {}, {}, "",
        ).record()  # fmt: skip
        shipper.strict_offer(first, timeout=0.2)  # durable: in the spool
        assert [r.record_id for r in shipper.spool.peek(10)] == [first.record_id]
        second = ledger_pb2.Record()
        second.CopyFrom(first)
        second.record_id = "01a223c0-4138-71ff-a7eb-5b111843d9ef"
        with pytest.raises(AuditUnavailable, match="spool is full"):
            shipper.strict_offer(second, timeout=0.2)
    finally:
        shipper.close(timeout=1)


def test_predict_runs_onnx_runtime_directly_with_the_public_results(
    onnx_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model skips the Python wrapper's per-call checks (`_runner`), and answers
    exactly what the public `InferenceSession.run` answers."""
    _, _, model, rows = onnx_model
    session = serving(onnx_model, "1").session
    public = {n: session.run(None, {session.get_inputs()[0].name: rows[:n]}) for n in (1, 3)}

    def wrapper_run(*_: object) -> None:
        raise AssertionError("predict went through InferenceSession.run")

    # This onnxruntime has the inner run: a model built now never calls the wrapper's.
    monkeypatch.setattr(type(session), "run", wrapper_run)
    m = serving(onnx_model, "1")
    for n in (1, 3):
        got = m.predict({m.inputs[0].name: rows[:n]})
        label, proba = public[n]
        assert np.array_equal(got["label"], label)
        assert np.array_equal(got["probabilities"], proba)
        assert np.array_equal(got["label"], model.predict(rows[:n]))


@pytest.mark.parametrize("builder", ["raises", "short"])
def test_a_broken_batch_builder_loses_no_sample(tmp_path: Path, builder: str) -> None:
    """A builder that raises or answers for fewer samples: the batch is built one at a
    time instead, so every sample is still spooled (the ledger is away here)."""

    def build(samples: list[Any]) -> list[Any]:
        if builder == "raises":
            raise RuntimeError("builder bug")
        return []

    shipper = Shipper(
        "127.0.0.1:9", Spool(tmp_path / "spool.db", 100), flush_interval=0.01, build=build
    )
    try:
        ids = [f"01a223c0-4138-71ff-a7eb-5b111843d9e{i}" for i in range(3)]
        for rid in ids:
            sample = PendingPrediction(
                Stamper(b"k" * 32), rid, "m", "1.0.0", "a" * 64, "s", TRACE, CALLER_SPAN,
                {"x": np.zeros((1, 2), np.float32)}, {"label": np.array([1])}, "",
            )  # fmt: skip
            shipper.offer(sample)
        end = time.monotonic() + 30
        while shipper.counters()["spooled"] < 3:
            assert time.monotonic() < end, shipper.counters()
            time.sleep(0.01)
        assert sorted(r.record_id for r in shipper.spool.peek(10)) == ids
        assert shipper.counters()["dropped"] == 0
    finally:
        shipper.close(timeout=1)


def test_a_serving_model_stays_hashable(onnx_model: Any) -> None:
    m = serving(onnx_model, "1")
    assert hash(m) == hash(m)
