"""The Open Inference Protocol v2 over gRPC: what Triton's and KServe's clients speak.

A thin adapter over `mrm.proxy.core`: protobuf in, domain request to the core,
domain response back to protobuf. Domain errors carry their status codes and
the server's interceptor maps them.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry import trace

from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.proxy.audit import Stamper
from mrm.proxy.core import (
    InferenceCore,
    InferRequest,
    Models,
    RecordSink,
    parent_context,
    server_version,
)
from mrm.proxy.metrics import InferenceMetrics
from mrm.proxy.tensors import TensorSpec, decode_inputs, encode_outputs

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ["InferenceServicer", "RecordSink"]


def _tensor_meta(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )


class InferenceServicer(pbg.GRPCInferenceServiceServicer):
    """`inference.GRPCInferenceService` over an `InferenceCore`.

    It makes its own span per ModelInfer through the core (the server's
    OpenTelemetry interceptor skips this service): one span, its parent taken
    from the caller's metadata, never made the current span, built in one step
    (`mrm.proxy.spans`). Give `core` to share one with the REST binding.
    """

    def __init__(
        self,
        watcher: Models,
        stamper: Stamper,
        sink: RecordSink,
        *,
        strict_timeout: float = 0.5,
        tracer: trace.Tracer | None = None,
        metrics: InferenceMetrics | None = None,
        core: InferenceCore | None = None,
    ) -> None:
        self.core = core or InferenceCore(
            watcher, stamper, sink, strict_timeout=strict_timeout, tracer=tracer, metrics=metrics
        )
        self._route = self.core.route(_SPAN_NAME, _SPAN_ATTRIBUTES)

    def close(self) -> None:
        self.core.close()

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return _LIVE

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.core.ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="mrm", version=server_version(), extensions=[])

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        meta = self.core.metadata(request.name, request.version)
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[_tensor_meta(s) for s in meta.inputs],
            outputs=[_tensor_meta(s) for s in meta.outputs],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        given = request.parameters
        result = await self.core.infer(
            InferRequest(
                request.model_name,
                request.model_version,
                lambda specs, label: decode_inputs(request, specs, model=label),
                id=request.id,
                subject_id=given["subject_id"].string_param if "subject_id" in given else "",
                outputs=[o.name for o in request.outputs],
                parent=parent_context(context.invocation_metadata() or ()),
            ),
            self._route,
        )
        response = pb.ModelInferResponse(
            model_name=result.model_name, model_version=result.model_version, id=result.id
        )
        params = response.parameters
        params["trace_id"].string_param = result.trace_id
        if result.record_id:
            params["mrm_record_id"].string_param = result.record_id
        encode_outputs(response, result.outputs, raw=bool(request.raw_input_contents))
        return response


_SPAN_NAME = "/inference.GRPCInferenceService/ModelInfer"
_SPAN_ATTRIBUTES = {
    "rpc.system": "grpc",
    "rpc.service": "inference.GRPCInferenceService",
    "rpc.method": "ModelInfer",
}
_LIVE = pb.ServerLiveResponse(live=True)
