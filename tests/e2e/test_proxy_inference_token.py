"""MRM_PROXY_REQUIRE_TOKEN: the inference endpoint's token check (off by default,
its callers usually sit behind the mesh). On, inference needs any valid
credential; the health RPCs (ServerLive, ServerReady, ModelReady) never do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mrm.core.auth import tokens
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import TEST_TOKEN, status_of


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[RunningLedger]:
    stack = start_ledger(tmp_path / "home", proxy_require_token=True)
    yield stack
    stack.stack.stop()


def test_inference_needs_a_token_and_health_does_not(closed: RunningLedger) -> None:
    with grpc.insecure_channel(closed.proxy_addr) as ch:
        stub = oip_grpc.GRPCInferenceServiceStub(ch)
        infer = oip.ModelInferRequest(model_name="nope")
        assert status_of(lambda: stub.ModelInfer(infer)) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            status_of(
                lambda: stub.ModelInfer(
                    infer, metadata=(("authorization", f"Bearer {tokens.new_token()}"),)
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert status_of(lambda: stub.ModelMetadata(oip.ModelMetadataRequest(name="nope"))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        # a valid token reaches the proxy, which then says the model is unknown
        good = (("authorization", f"Bearer {TEST_TOKEN}"),)
        assert status_of(lambda: stub.ModelInfer(infer, metadata=good)) == grpc.StatusCode.NOT_FOUND
        assert stub.ServerLive(oip.ServerLiveRequest()).live
        assert status_of(lambda: stub.ServerReady(oip.ServerReadyRequest())) == grpc.StatusCode.OK
        assert not stub.ModelReady(oip.ModelReadyRequest(name="nope")).ready


def test_by_default_inference_is_open(ledger_server: RunningLedger) -> None:
    with grpc.insecure_channel(ledger_server.proxy_addr) as ch:
        stub = oip_grpc.GRPCInferenceServiceStub(ch)
        code = status_of(lambda: stub.ModelInfer(oip.ModelInferRequest(model_name="nope")))
    assert code == grpc.StatusCode.NOT_FOUND
