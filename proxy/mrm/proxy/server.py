"""The Open Inference Protocol v2 over gRPC: what Triton's and KServe's clients speak."""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import grpc
import numpy as np
from opentelemetry import propagate, trace
from opentelemetry.context import Context as Context_

from mrm.core.errors import InvalidArgument, Unavailable
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.proxy.audit import PendingPrediction, Stamper
from mrm.proxy.metrics import InferenceMetrics
from mrm.proxy.models import ServingModel
from mrm.proxy.shipper import AuditUnavailable
from mrm.proxy.spans import InferenceSpan, InferenceSpans
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
    """Where sampled records go (the shipper)."""

    def offer(self, record: PendingPrediction) -> bool:
        """Never blocks, never raises; the record is built in the sink's own thread."""
        ...

    def strict_offer(self, record: ledger_pb2.Record, timeout: float) -> None:
        """Blocks until the record is durable; raises AuditUnavailable if it cannot be."""
        ...


class InferenceServicer(pbg.GRPCInferenceServiceServicer):
    """Thin transport over the watcher's model table and ONNX Runtime.

    It makes its own span per ModelInfer (the server's OpenTelemetry interceptor
    skips this service): one span, its parent taken from the caller's metadata,
    never made the current span, built in one step (`mrm.proxy.spans`).
    """

    def __init__(
        self,
        watcher: DeploymentWatcher,
        stamper: Stamper,
        sink: RecordSink,
        *,
        strict_timeout: float = 0.5,
        tracer: trace.Tracer | None = None,
        metrics: InferenceMetrics | None = None,
    ) -> None:
        self.watcher = watcher
        self._metrics = metrics
        self.stamper = stamper
        self.sink = sink
        self.strict_timeout = strict_timeout
        self._spans = InferenceSpans(_SPAN_NAME, tracer)
        # Strict callers block here until their group commit is durable.
        self._strict_pool = ThreadPoolExecutor(64, thread_name_prefix="mrm-strict")

    def close(self) -> None:
        self._strict_pool.shutdown(wait=True, cancel_futures=True)

    def _model(self, name: str, model_version: str) -> ServingModel:
        if not name:
            raise InvalidArgument("model_name", "is required")
        return self.watcher.table.resolve(name, model_version)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return _LIVE

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
        started = time.perf_counter()
        model = self._model(request.model_name, request.model_version)
        span = self._spans.start(
            _parent(context),
            {**_SPAN_ATTRIBUTES, "mrm.model": model.name, "mrm.model_version": model.version},
        )
        extra: dict[str, str] = {}
        error = ""
        ok = False  # a cancelled call (BaseException) is a failure too
        try:
            response = await self._infer(request, model, span, extra)
            ok = True
            return response
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:  # the span is finished once the response is on its way
            if self._metrics is not None:
                self._metrics.observe(model.name, model.version, ok, time.perf_counter() - started)
            asyncio.get_running_loop().call_soon(
                self._spans.end, span, extra, error, time.time_ns()
            )

    async def _infer(
        self,
        request: pb.ModelInferRequest,
        model: ServingModel,
        span: InferenceSpan,
        extra: dict[str, str],
    ) -> pb.ModelInferResponse:
        wanted = {o.name for o in request.outputs}
        if wanted:  # refused before any work is done
            names = [spec.name for spec in model.outputs]
            if unknown := wanted.difference(names):
                raise InvalidArgument(
                    "outputs",
                    f"{sorted(unknown)} are not outputs of {model.name} ({', '.join(names)})",
                )
        arrays = decode_inputs(request, model.inputs, model=f"{model.name} {model.version}")
        check_finite(arrays, allow_nan=False)
        rows = len(next(iter(arrays.values()))) if arrays else 0
        if rows > _INLINE_ROWS:
            outputs = await asyncio.to_thread(model.predict, arrays)
        else:
            outputs = model.predict(arrays)
        outputs = _squeeze(outputs)
        response = pb.ModelInferResponse(
            model_name=model.name, model_version=model.version, id=request.id
        )
        await self._stamp(request, response, model, span, extra, arrays, outputs)
        shown = {k: v for k, v in outputs.items() if k in wanted} if wanted else outputs
        encode_outputs(response, shown, raw=bool(request.raw_input_contents))
        return response

    async def _stamp(
        self,
        request: pb.ModelInferRequest,
        response: pb.ModelInferResponse,
        model: ServingModel,
        span: InferenceSpan,
        extra: dict[str, str],
        arrays: dict[str, np.ndarray[Any, Any]],
        outputs: dict[str, np.ndarray[Any, Any]],
    ) -> None:
        """Link the decision to its trace and, when sampled, to its audit record.

        The record holds every output whatever the request asked to see. A strict
        model's record is durable before this returns; anyone else's is handed to
        the shipper, which builds it in its own thread.
        """
        # The caller's trace id survives even when span sampling drops the span.
        trace_id = format(span.trace_id, "032x") if span.trace_id else secrets.token_hex(16)
        span_id = format(span.span_id, "016x") if span.span_id else ""
        params = response.parameters
        params["trace_id"].string_param = trace_id
        record_id = self.stamper.new_record_id()
        if not self.stamper.sampled(record_id, model.sample_rate):
            return
        given = request.parameters
        subject = given["subject_id"].string_param if "subject_id" in given else ""
        pending = PendingPrediction(
            self.stamper,
            record_id,
            model.name,
            model.version,
            model.onnx_sha256,
            subject,
            trace_id,
            span_id,
            arrays,
            outputs,
            request.id,
        )
        if model.strict:
            await self._durable(pending, model)
        else:
            self.sink.offer(pending)
        extra["mrm.record_id"] = record_id
        params["mrm_record_id"].string_param = record_id

    async def _durable(self, pending: PendingPrediction, model: ServingModel) -> None:
        """Strict mode: the record is in the ledger or the spool, or the call fails.
        It is built (subject hashed, canonical JSON) in the pool, off the event loop."""

        def write() -> None:
            self.sink.strict_offer(pending.record(), self.strict_timeout)

        try:
            await asyncio.get_running_loop().run_in_executor(self._strict_pool, write)
        except AuditUnavailable as exc:
            raise Unavailable(
                f"{model.name} {model.version} is strict and its decision could not be "
                f"recorded ({exc}); it was not served"
            ) from None


_SPAN_NAME = "/inference.GRPCInferenceService/ModelInfer"
_SPAN_ATTRIBUTES = {
    "rpc.system": "grpc",
    "rpc.service": "inference.GRPCInferenceService",
    "rpc.method": "ModelInfer",
}
_LIVE = pb.ServerLiveResponse(live=True)
_fields: list[Any] = [None, frozenset()]  # (propagator, the metadata keys it reads)


def _parent(context: Context) -> Context_ | None:
    """The caller's trace context from the request metadata (W3C traceparent, or
    whatever OTEL_PROPAGATORS names); None (a new trace) when the caller sent none."""
    metadata = context.invocation_metadata() or ()
    propagator = propagate.get_global_textmap()
    if _fields[0] is not propagator:  # a composite propagator builds the set on each call
        _fields[:] = [propagator, propagator.fields]
    fields = _fields[1]
    carrier = {k: v for k, v in metadata if k in fields and isinstance(v, str)}
    return propagator.extract(carrier) if carrier else None


def _squeeze(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Labels as a flat vector whatever ONNX returned."""
    label = outputs.get("label")
    if label is not None and label.ndim > 1:
        outputs = outputs | {"label": label.reshape(-1)}
    return outputs
