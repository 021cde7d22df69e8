"""Shared steps of the explanation tests: deploy a model with its baseline, send
decisions through the proxy with subject ids, wait until the ledger has them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.explain import ExplainClient
from mrm.client.ledger import LedgerClient, Record
from mrm.client.registry import RegistryClient
from mrm.deploy.pipeline import Published, prepare, publish
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import RunningLedger
from tests.support.credit import Builder, project, tree_model
from tests.support.inference import deploy_config, wait_ready

EXPLAIN_TABLE = {
    "positive_label": "1",
    "labels": {"1": "Rejected", "0": "Approved"},
    "output_name": "probability of default",
}


def deploy_explained(
    stack: RunningLedger,
    tmp: Path,
    build: Builder = tree_model,
    name: str = "credit-risk",
    version: str = "1.2.4",
    explain: dict[str, Any] | None = None,
) -> tuple[Any, pd.DataFrame, Published]:
    """Deploy through the same steps `mrmctl deploy` runs, baseline included."""
    tmp.mkdir(parents=True, exist_ok=True)
    model, X, target = project(tmp, build, name)
    cfg = deploy_config(
        tmp, name, version, target, explain=EXPLAIN_TABLE if explain is None else explain
    )
    with RegistryClient(stack.registry_addr) as reg, ExplainClient(stack.explain_addr) as ex:
        published = publish(
            cfg, prepare(cfg, lambda _s, _d: None, env={}), reg, lambda _s, _d: None, ex
        )
    wait_ready(stack, name)
    return model, X, published


def decide(stack: RunningLedger, name: str, rows: np.ndarray[Any, Any], subject: str) -> list[str]:
    """Send each row as its own decision about `subject`; their record ids, once recorded."""
    ids = []
    with grpc.insecure_channel(stack.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        input_name = stub.ModelMetadata(oip.ModelMetadataRequest(name=name)).inputs[0].name
        for row in rows:
            array = np.asarray(row, np.float32).reshape(1, -1)
            request = oip.ModelInferRequest(
                model_name=name,
                inputs=[
                    oip.ModelInferRequest.InferInputTensor(
                        name=input_name, datatype="FP32", shape=list(array.shape)
                    )
                ],
                raw_input_contents=[array.tobytes()],
            )
            request.parameters["subject_id"].string_param = subject
            response = stub.ModelInfer(request)
            ids.append(response.parameters["mrm_record_id"].string_param)
    wait_recorded(stack, ids)
    return ids


def wait_recorded(stack: RunningLedger, ids: list[str]) -> list[Record]:
    with LedgerClient(stack.addr) as ledger:
        deadline = time.monotonic() + 30
        while True:
            found = {r.record_id: r for r in ledger.query(kind="PREDICTION")}
            if all(i in found for i in ids):
                return [found[i] for i in ids]
            assert time.monotonic() < deadline, "the proxy never shipped the decisions"
            time.sleep(0.05)
