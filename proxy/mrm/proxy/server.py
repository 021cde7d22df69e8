"""The Open Inference Protocol v2 over gRPC: what Triton's and KServe's clients speak."""

from __future__ import annotations

import asyncio
import secrets
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import grpc
import numpy as np
from opentelemetry import trace

from mrm.core.errors import InvalidArgument
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.proxy.audit import Stamper, prediction_record
from mrm.proxy.models import ServingModel
from mrm.proxy.tensors import check_finite, decode_inputs, encode_outputs
from mrm.proxy.watcher import DeploymentWatcher
from mrm.v1 import ledger_pb2

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


class RecordSink(Protocol):
    """Where sampled records go (the shipper): never blocks, never raises."""

    def offer(self, record: ledger_pb2.Record) -> bool: ...


class InferenceServicer(pbg.GRPCInferenceServiceServicer):
    """Thin transport over the watcher's model table and ONNX Runtime."""

    def __init__(self, watcher: DeploymentWatcher, stamper: Stamper, sink: RecordSink) -> None:
        self.watcher = watcher
        self.stamper = stamper
        self.sink = sink

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
        self._stamp(request, response, model, arrays, outputs)
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

    def _stamp(
        self,
        request: pb.ModelInferRequest,
        response: pb.ModelInferResponse,
        model: ServingModel,
        arrays: dict[str, np.ndarray[Any, Any]],
        outputs: dict[str, np.ndarray[Any, Any]],
    ) -> None:
        """Link the decision to its trace and, when sampled, to its audit record."""
        span = trace.get_current_span()
        ctx = span.get_span_context()
        # The caller's trace id survives even when span sampling drops the span.
        trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else secrets.token_hex(16)
        span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        response.parameters["trace_id"].string_param = trace_id
        record_id = self.stamper.new_record_id()
        span.set_attribute("mrm.model", model.name)
        span.set_attribute("mrm.model_version", model.version)
        if not self.stamper.sampled(record_id, model.sample_rate):
            return
        subject = (
            request.parameters["subject_id"].string_param
            if "subject_id" in request.parameters
            else ""
        )
        record = prediction_record(
            record_id=record_id,
            model_name=model.name,
            model_version=model.version,
            onnx_sha256=model.onnx_sha256,
            subject=self.stamper.subject_ref(subject),
            trace_id=trace_id,
            span_id=span_id,
            inputs=arrays,
            outputs=_squeeze(outputs),
            request_id=request.id,
        )
        self.sink.offer(record)
        span.set_attribute("mrm.record_id", record_id)
        response.parameters["mrm_record_id"].string_param = record_id


def _squeeze(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Labels as a flat vector whatever ONNX returned."""
    label = outputs.get("label")
    if label is not None and label.ndim > 1:
        outputs = outputs | {"label": label.reshape(-1)}
    return outputs
