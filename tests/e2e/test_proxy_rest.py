"""The proxy's REST/JSON binding of the Open Inference Protocol, through Triton's own
HTTP client: health, metadata, inference, the same stamp and the same record as gRPC."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from mrm.client.ledger import LedgerClient
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.v1 import proxy_pb2, proxy_pb2_grpc
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import TEST_TOKEN
from tests.support.credit import tree_model
from tests.support.inference import deployed, infer_request
from tests.support.proxy_stack import MODEL, deploy_gbt, stack_with_ledger_on, wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def rest_stack(tmp_path: Path) -> Iterator[tuple[RunningLedger, str]]:
    addr = f"127.0.0.1:{_free_port()}"
    running = start_ledger(tmp_path / "mrm-home", proxy_http_addr=addr)
    yield running, addr
    running.stack.stop()


def _records(stack: RunningLedger, trace_id: str, count: int) -> list[Any]:
    with LedgerClient(stack.addr) as ledger:
        deadline = time.monotonic() + 30
        while True:
            found = list(ledger.query(kind="PREDICTION", trace_id=trace_id))
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _call(
    addr: str, path: str, body: bytes | None = None, token: str = ""
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://{addr}{path}",
        data=body,
        method="POST" if body is not None else "GET",
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_triton_http_client_is_served_stamped_and_recorded_as_over_grpc(
    rest_stack: tuple[RunningLedger, str], tmp_path: Path
) -> None:
    stack, addr = rest_stack
    model, X = deployed(stack, tmp_path, tree_model, "gbt")
    rows = X.iloc[:3].to_numpy(np.float32)
    with grpc.insecure_channel(stack.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt")).inputs[0].name
        request = infer_request("gbt", rows, name)
        request.id = "rest-binary"
        request.parameters["subject_id"].string_param = "applicant-7"
        other_trace = "0af7651916cd43dd8448eb211c80319c"
        stub.ModelInfer(
            request, metadata=(("traceparent", f"00-{other_trace}-b7ad6b7169203331-01"),)
        )
    np.savez(tmp_path / "in.npz", **{name: rows})
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.e2e.triton_http_driver",
            addr,
            "gbt",
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
            f"00-{TRACE}-00f067aa0ba902b7-01",
        ],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    out = np.load(tmp_path / "out.npz", allow_pickle=False)
    seen = json.loads(str(out["_meta"]))
    assert seen["health"] == {
        "live": True,
        "ready": True,
        "model_ready": True,
        "unknown_ready": False,
    }
    assert seen["server"]["name"] == "mrm"
    assert seen["model"]["versions"] == ["1.0.0"]
    assert seen["model"]["inputs"] == [
        {"name": name, "datatype": "FP32", "shape": [-1, X.shape[1]]}
    ]
    for flavour in ("binary", "json"):
        assert list(out[f"{flavour}:label"]) == list(model.predict(X.iloc[:3]))
        np.testing.assert_allclose(
            out[f"{flavour}:probabilities"], model.predict_proba(X.iloc[:3]), atol=1e-5
        )
        params = seen["responses"][flavour]["parameters"]
        assert params["trace_id"] == TRACE
        assert seen["responses"][flavour]["id"] == f"rest-{flavour}"
    by_id = {r.record_id: r for r in _records(stack, TRACE, 2)}
    assert set(by_id) == {
        seen["responses"][f]["parameters"]["mrm_record_id"] for f in ("binary", "json")
    }
    rest_record = by_id[seen["responses"]["binary"]["parameters"]["mrm_record_id"]]
    [grpc_record] = _records(stack, other_trace, 1)
    assert rest_record.subject == grpc_record.subject  # the same subject, the same hash
    assert "applicant-7" not in rest_record.subject + rest_record.body_json
    assert json.loads(rest_record.body_json) == json.loads(grpc_record.body_json)


def test_bad_requests_get_clear_errors_and_statuses(
    rest_stack: tuple[RunningLedger, str], tmp_path: Path
) -> None:
    stack, addr = rest_stack
    _, X = deployed(stack, tmp_path, tree_model, "gbt")
    with grpc.insecure_channel(stack.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt")).inputs[0].name
    row = X.iloc[:1].to_numpy(np.float32).tolist()

    def infer(doc: Any, path: str = "/v2/models/gbt/infer") -> tuple[int, str]:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        status, answer = _call(addr, path, body)
        return status, answer.get("error", "")

    good = {"name": name, "shape": [1, X.shape[1]], "datatype": "FP32", "data": row}
    status, answer = _call(
        addr, "/v2/models/gbt/versions/1.0.0/infer", json.dumps({"inputs": [good]}).encode()
    )
    assert status == 200
    assert answer["model_version"] == "1.0.0"
    assert [o["name"] for o in answer["outputs"]] == ["label", "probabilities"]
    assert infer(b"{not json")[0] == 400
    assert "not valid JSON" in infer(b"{not json")[1]
    assert infer({"inputs": [good | {"datatype": "INT64"}]}) == (
        400,
        "inputs[0].datatype: 'INT64', but " + name + " is FP32",
    )
    status, error = infer({"inputs": [good | {"shape": [1, X.shape[1] - 1]}]})
    assert status == 400
    assert "does not fit" in error
    assert f"[-1, {X.shape[1]}]" in error
    status, error = infer({"inputs": [good | {"data": ["a"] * X.shape[1]}]})
    assert status == 400
    assert error == "inputs[0].data: holds values that are not FP32"
    status, error = infer({"inputs": [good]}, "/v2/models/nope/infer")
    assert (status, error) == (404, "model 'nope' is not deployed on this proxy")
    status, error = infer({"inputs": [good]}, "/v2/models/gbt/versions/9.9.9/infer")
    assert status == 404
    assert "gbt 9.9.9 is not deployed" in error
    assert _call(addr, "/v2/models/nope")[0] == 404
    assert _call(addr, "/v2/models/nope/ready")[0] == 404
    assert _call(addr, "/v2/nowhere")[0] == 404


def test_with_require_token_rest_inference_needs_one_and_health_does_not(
    tmp_path: Path,
) -> None:
    addr = f"127.0.0.1:{_free_port()}"
    stack = start_ledger(tmp_path / "home", proxy_require_token=True, proxy_http_addr=addr)
    try:
        body = json.dumps(
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        )
        status, answer = _call(addr, "/v2/models/nope/infer", body.encode())
        assert status == 401
        assert answer["error"]
        assert _call(addr, "/v2/models/nope")[0] == 401
        assert _call(addr, "/v2/models/nope/infer", body.encode(), "mrm_not-a-token")[0] == 401
        # a valid token reaches the proxy, which then says the model is unknown
        assert _call(addr, "/v2/models/nope/infer", body.encode(), TEST_TOKEN)[0] == 404
        assert _call(addr, "/v2/health/live") == (200, {"live": True})
        assert _call(addr, "/v2/health/ready")[0] == 200
        assert _call(addr, "/v2/models/nope/ready")[0] == 404
    finally:
        stack.stack.stop()


def test_every_worker_serves_rest_on_the_shared_port(tmp_path: Path, pg_url: str) -> None:
    http_addr = f"127.0.0.1:{_free_port()}"
    running = stack_with_ledger_on(
        tmp_path / "home", _free_port(), pg_url, proxy_addr=f"127.0.0.1:{_free_port()}",
        proxy_http_addr=http_addr, reuse_port=True, proxy_workers=2,
    )  # fmt: skip
    try:
        rows, name = deploy_gbt(running, tmp_path)
        wait_until(
            lambda: (tmp_path / "home" / "proxy-worker-1" / "proxy-spool.db").exists(),
            "the worker has its own spool",
        )
        doc = {"inputs": [{"name": name, "shape": list(rows.shape), "datatype": "FP32"}]}
        doc["inputs"][0]["data"] = rows.tolist()
        ids = []
        for _ in range(40):  # urllib opens a new connection each time: both processes answer
            wait_until(
                lambda: _call(http_addr, f"/v2/models/{MODEL}/ready")[0] == 200,
                "the model is loaded in this process",
            )
            status, answer = _call(http_addr, f"/v2/models/{MODEL}/infer", json.dumps(doc).encode())
            assert status == 200, answer
            ids.append(answer["parameters"]["mrm_record_id"])
        sampled: dict[str, int] = {}
        for _ in range(60):
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(running.proxy_addr, options=options) as channel:
                got = proxy_pb2_grpc.ProxyServiceStub(channel).GetProxyStatus(
                    proxy_pb2.GetProxyStatusRequest(),
                    timeout=30,
                    metadata=(("authorization", f"Bearer {TEST_TOKEN}"),),
                )
                sampled[got.instance] = got.counters.sampled
            if len(sampled) == 2:
                break
        assert len(sampled) == 2, sampled
        assert sum(sampled.values()) == 40, sampled  # every REST decision, between them
        assert min(sampled.values()) > 0, sampled  # and each process served some
        with LedgerClient(running.addr) as ledger:

            def landed() -> bool:
                got = {r.record_id for r in ledger.query(kind="PREDICTION", model_name=MODEL)}
                return set(ids) <= got

            wait_until(landed, "every REST decision's record is in the ledger")
    finally:
        running.stack.stop()
