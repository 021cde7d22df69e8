"""The inference proxy serves what `mrmctl deploy` registered, to Triton's own client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import RunningLedger
from tests.support.credit import Builder, pipeline_model, regressor, tree_model
from tests.support.inference import deployed, infer_request


def triton(
    stack: RunningLedger, tmp: Path, name: str, inputs: dict[str, np.ndarray[Any, Any]]
) -> Any:
    np.savez(tmp / "in.npz", **inputs)  # type: ignore[arg-type]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.e2e.triton_driver",
            stack.proxy_addr,
            name,
            str(tmp / "in.npz"),
            str(tmp / "out.npz"),
        ],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    return np.load(tmp / "out.npz", allow_pickle=False)


@pytest.mark.parametrize(
    ("build", "name"), [(tree_model, "gbt"), (pipeline_model, "pipeline"), (regressor, "regressor")]
)
def test_triton_client_gets_scikit_learns_answers(
    build: Builder, name: str, ledger_server: RunningLedger, tmp_path: Path
) -> None:
    model, X = deployed(ledger_server, tmp_path, build, name)
    batch = X.iloc[:50]
    if name == "pipeline":  # one input per column, strings as BYTES
        inputs = {
            c: (
                batch[[c]].to_numpy(dtype=object)
                if c == "employment"
                else batch[[c]].to_numpy(np.float32)
            )
            for c in batch.columns
        }
    else:  # one FP32 tensor, named as the model's metadata says
        with grpc.insecure_channel(ledger_server.proxy_addr) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            meta = stub.ModelMetadata(oip.ModelMetadataRequest(name=name))
        assert [(i.datatype, list(i.shape)) for i in meta.inputs] == [
            ("FP32", [-1, batch.shape[1]])
        ]
        inputs = {meta.inputs[0].name: batch.to_numpy(np.float32)}
    out = triton(ledger_server, tmp_path, name, inputs)
    seen = json.loads(str(out["_meta"]))
    assert seen["server"]["name"] == "mrm"
    assert seen["response"]["model_version"] == "1.0.0"
    if name == "regressor":
        np.testing.assert_allclose(out["value"].reshape(-1), model.predict(batch), rtol=1e-5)
    else:
        assert list(out["label"].reshape(-1)) == list(model.predict(batch))
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(batch), atol=1e-5)


def test_bad_requests_get_clear_statuses(ledger_server: RunningLedger, tmp_path: Path) -> None:
    from tests.support.statuses import bad_request

    _, X = deployed(ledger_server, tmp_path, tree_model, "gbt")
    good = X.iloc[:3].to_numpy(np.float32)
    with grpc.insecure_channel(ledger_server.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt")).inputs[0].name
        first = stub.ModelInfer(infer_request("gbt", good, name))
        assert first.model_version == "1.0.0"
        nan = good.copy()
        nan[1, 0] = np.nan
        inf = good.copy()
        inf[0, 1] = np.inf
        short = infer_request("gbt", good, name)
        short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
        fp64 = infer_request("gbt", good, name)
        fp64.inputs[0].datatype = "FP64"
        fp64.raw_input_contents[0] = good.astype(np.float64).tobytes()
        no_such_output = infer_request("gbt", good, name)
        no_such_output.outputs.add(name="shap")
        invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        cases = [
            (infer_request("nope", good, name), not_found, ""),
            (infer_request("gbt", good, name, version="9.9.9"), not_found, ""),
            (infer_request("", good, name), invalid, "model_name"),
            (infer_request("gbt", good, "not-an-input"), invalid, "inputs[0].name"),
            (infer_request("gbt", good[:, :2], name), invalid, "inputs[0].shape"),
            (fp64, invalid, "inputs[0].datatype"),
            (infer_request("gbt", nan, name), invalid, ""),
            (infer_request("gbt", inf, name), invalid, ""),
            (short, invalid, "raw_input_contents[0]"),
            (no_such_output, invalid, "outputs"),
        ]
        for request, code, field in cases:
            got = bad_request(lambda r=request: stub.ModelInfer(r))  # type: ignore[misc]
            assert got[0] == code, (request.model_name, got)
            if field:
                assert got[1] == field, got
        assert not stub.ModelReady(oip.ModelReadyRequest(name="nope")).ready
        last = stub.ModelInfer(infer_request("gbt", good, name))
        # None of the refused requests was recorded: the ledger holds exactly the two
        # served decisions (the shipper delivers in order, so once the last is in, all are).
        served = {first.parameters["mrm_record_id"].string_param}
        served.add(last.parameters["mrm_record_id"].string_param)
        with LedgerClient(ledger_server.addr) as ledger:
            deadline = time.monotonic() + 30
            while len(recorded := {r.record_id for r in ledger.query(kind="PREDICTION")}) < 2:
                assert time.monotonic() < deadline, recorded
                time.sleep(0.05)
        assert recorded == served
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer"
        )
        assert bad_request(lambda: raw(b"\xff\xff\xff garbage"))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "request",
        )
        assert stub.ServerLive(oip.ServerLiveRequest()).live  # the server stayed up


def test_oversized_message_is_resource_exhausted(tmp_path: Path) -> None:
    from tests.conftest import start_ledger
    from tests.support.statuses import bad_request

    running = start_ledger(tmp_path / "home", grpc_max_message_bytes=1 << 20)
    try:
        with grpc.insecure_channel(running.proxy_addr) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            big = infer_request("gbt", np.zeros((3000, 100), np.float32), "input")
            assert (
                bad_request(lambda: stub.ModelInfer(big))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert stub.ServerLive(oip.ServerLiveRequest()).live
    finally:
        running.stack.stop()


def test_hot_swap_fails_no_request(ledger_server: RunningLedger, tmp_path: Path) -> None:
    import threading

    _, X = deployed(ledger_server, tmp_path, tree_model, "gbt")
    row = X.iloc[:1].to_numpy(np.float32)
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with grpc.insecure_channel(ledger_server.proxy_addr) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt")).inputs[0].name
            while not stop.is_set():
                try:
                    versions.append(stub.ModelInfer(infer_request("gbt", row, name)).model_version)
                except grpc.RpcError as e:
                    failures.append(str(e))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        with RegistryClient(ledger_server.registry_addr) as reg:
            v1 = reg.get_version("gbt", "1.0.0")
            reg.register(
                type(v1)(
                    model_name="gbt",
                    version="1.1.0",
                    artifacts=[type(a)(role=a.role, sha256=a.sha256) for a in v1.artifacts],
                    sample_rate=1.0,
                )
            )
            reg.promote("gbt", "1.1.0", "production")
        deadline = time.monotonic() + 30
        while "1.1.0" not in versions[-5:]:
            assert time.monotonic() < deadline, "the proxy never served 1.1.0"
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    assert not failures
    assert set(versions) == {"1.0.0", "1.1.0"}
    assert versions.index("1.1.0") > 0


def test_decisions_are_stamped_sampled_and_traced(
    ledger_server: RunningLedger, tmp_path: Path
) -> None:
    from opentelemetry import trace as otel
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mrm.client.ledger import LedgerClient

    provider = otel.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    model, X = deployed(ledger_server, tmp_path, tree_model, "gbt")
    rows = X.iloc[:2].to_numpy(np.float32)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with grpc.insecure_channel(ledger_server.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt")).inputs[0].name
        request = infer_request("gbt", rows, name)
        request.parameters["subject_id"].string_param = "applicant-7"
        response = stub.ModelInfer(
            request, metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
        )
    record_id = response.parameters["mrm_record_id"].string_param
    assert response.parameters["trace_id"].string_param == trace_id
    with LedgerClient(ledger_server.addr) as ledger:
        deadline = time.monotonic() + 30
        while True:
            found = list(ledger.query(kind="PREDICTION", trace_id=trace_id))
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert [r.record_id for r in found] == [record_id]
    rec = found[0]
    assert rec.subject.startswith("hmac-sha256:")
    assert "applicant-7" not in rec.subject + rec.body_json  # never in the clear
    body = json.loads(rec.body_json)
    np.testing.assert_allclose(np.array(body["request"]["inputs"][name]), rows)
    assert body["response"]["label"] == model.predict(X.iloc[:2]).tolist()
    exported = [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("mrm.record_id") == record_id
    ]
    assert len(exported) == 1
    assert format(exported[0].context.trace_id, "032x") == trace_id
    assert format(exported[0].context.span_id, "016x") == rec.span_id
