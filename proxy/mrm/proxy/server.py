"""The Open Inference Protocol v2 over gRPC: what Triton's and KServe's clients speak."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
import numpy as np

from mrm.core.errors import InvalidArgument
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.proxy.models import ServingModel
from mrm.proxy.tensors import check_finite, decode_inputs, encode_outputs
from mrm.proxy.watcher import DeploymentWatcher

Context = grpc.aio.ServicerContext[Any, Any]
_INLINE_ROWS = 256  # larger batches run in a worker thread so the loop stays responsive


def _version() -> str:
    try:
        return version("mrm")
    except PackageNotFoundError:
        return "0"


def _tensor_meta(spec: Any) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )


class InferenceServicer(pbg.GRPCInferenceServiceServicer):
    """Thin transport over the watcher's model table and ONNX Runtime."""

    def __init__(self, watcher: DeploymentWatcher) -> None:
        self.watcher = watcher

    def _model(self, name: str, model_version: str) -> ServingModel:
        if not name:
            raise InvalidArgument("model_name", "is required")
        return self.watcher.table.resolve(name, model_version)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.watcher.ready.is_set())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="mrm", version=_version(), extensions=[])

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        try:
            self._model(request.name, request.version)
        except Exception:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        model = self._model(request.name, request.version)
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=sorted(self.watcher.table.versions.get(model.name, {})),
            platform="onnxruntime_onnx",
            inputs=[_tensor_meta(s) for s in model.inputs],
            outputs=[_tensor_meta(s) for s in model.outputs],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        model = self._model(request.model_name, request.model_version)
        arrays = decode_inputs(request, model.inputs, model=f"{model.name} {model.version}")
        check_finite(arrays, allow_nan=False)
        rows = len(next(iter(arrays.values()))) if arrays else 0
        if rows > _INLINE_ROWS:
            outputs = await asyncio.to_thread(model.predict, arrays)
        else:
            outputs = model.predict(arrays)
        response = pb.ModelInferResponse(
            model_name=model.name, model_version=model.version, id=request.id
        )
        wanted = {o.name for o in request.outputs}
        if wanted:
            unknown = wanted - set(outputs)
            if unknown:
                names = ", ".join(outputs)
                raise InvalidArgument(
                    "outputs", f"{sorted(unknown)} are not outputs of {model.name} ({names})"
                )
            outputs = {k: v for k, v in outputs.items() if k in wanted}
        encode_outputs(response, _squeeze(outputs), raw=bool(request.raw_input_contents))
        return response


def _squeeze(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Labels as a flat vector whatever ONNX returned."""
    label = outputs.get("label")
    if label is not None and label.ndim > 1:
        outputs = outputs | {"label": label.reshape(-1)}
    return outputs
