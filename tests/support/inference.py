"""A model deployed through mrmctl, and inference requests to a proxy serving it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.registry import RegistryClient
from mrm.deploy.config import DeployConfig
from mrm.deploy.pipeline import prepare, publish
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import RunningLedger
from tests.support.credit import Builder, project


def deploy_config(tmp: Path, name: str, version: str, target: str, **extra: Any) -> DeployConfig:
    """What `mrmctl deploy` would read for `credit.project`'s files in `tmp`: production,
    sampled at 1.0; `extra` sets further fields (explain, say)."""
    return DeployConfig(
        model_path=tmp / "model.pkl",
        version=version,
        name=name,
        eval_data=tmp / "eval.csv",
        target=target,
        dataset_id="sha256:" + "0" * 64,
        training_data=None,
        source_commit="0" * 40,
        stage="production",
        sample_rate=1.0,
        fidelity_tolerance=1e-4,
        **extra,
    )


def wait_ready(stack: RunningLedger, name: str) -> None:
    """Until the stack's proxy reports `name` ready (60 s at most)."""
    with grpc.insecure_channel(stack.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + 60
        while not stub.ModelReady(oip.ModelReadyRequest(name=name)).ready:
            assert time.monotonic() < deadline, f"{name} never became ready on the proxy"
            time.sleep(0.05)


def deployed(
    stack: RunningLedger, tmp: Path, build: Builder, name: str
) -> tuple[Any, pd.DataFrame]:
    """Deploy `build`'s model as `name` 1.0.0 through the deploy pipeline and wait
    until the stack's proxy reports it ready; the fitted model and its inputs."""
    model, X, target = project(tmp, build, name)
    cfg = deploy_config(tmp, name, "1.0.0", target)
    with RegistryClient(stack.registry_addr) as reg:
        publish(cfg, prepare(cfg, lambda _s, _d: None, env={}), reg, lambda _s, _d: None)
    wait_ready(stack, name)
    return model, X


def infer_request(
    name: str, array: np.ndarray[Any, Any], input_name: str, version: str = ""
) -> oip.ModelInferRequest:
    """An Open Inference Protocol request carrying `array` as one FP32 tensor."""
    return oip.ModelInferRequest(
        model_name=name,
        model_version=version,
        inputs=[
            oip.ModelInferRequest.InferInputTensor(
                name=input_name, datatype="FP32", shape=list(array.shape)
            )
        ],
        raw_input_contents=[array.astype(np.float32).tobytes()],
    )
