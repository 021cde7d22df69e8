"""The inference data plane, free of any transport: what gRPC and REST both call.

A transport turns its request into an `InferRequest`, calls `InferenceCore.infer`
and turns the `InferResponse` (or the domain error it raised) back into its own
form. Everything that makes a decision auditable happens here, once, whatever
the wire: the model is resolved, the inputs decoded against its specs and
checked, the model run, the decision stamped (trace id, record id, sampling)
and, when sampled, handed to auditing (a strict model's record is durable
before `infer` returns). One span per decision (`mrm.proxy.spans`) and one
request count per decision (`/metrics`) are made here too.

Decoding is the transport's (protobuf and JSON tensors differ), but it runs
inside `infer`, against the resolved model's input specs, so the span and the
failure count cover a request that does not decode.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import numpy as np
from opentelemetry import propagate, trace
from opentelemetry.context import Context

from mrm.core.errors import InvalidArgument, Unavailable
from mrm.proxy.audit import PendingPrediction, Stamper
from mrm.proxy.metrics import InferenceMetrics
from mrm.proxy.models import ModelTable, ServingModel
from mrm.proxy.shipper import AuditUnavailable
from mrm.proxy.spans import InferenceSpan, InferenceSpans
from mrm.proxy.tensors import Array, TensorSpec, check_finite
from mrm.v1 import ledger_pb2

_INLINE_ROWS = 256  # larger batches run in a worker thread so the loop stays responsive

Decoder = Callable[[Sequence[TensorSpec], str], dict[str, Array]]
"""A transport's inputs as arrays: given the model's input specs and its label
("credit-risk 1.2.4"), the arrays keyed by spec name, in spec order; raises
InvalidArgument naming the field when they do not fit."""


class RecordSink(Protocol):
    """Where sampled records go (the shipper)."""

    def offer(self, record: PendingPrediction) -> bool:
        """Never blocks, never raises; the record is built in the sink's own thread."""
        ...

    def strict_offer(self, record: ledger_pb2.Record, timeout: float) -> None:
        """Blocks until the record is durable; raises AuditUnavailable if it cannot be."""
        ...


class Models(Protocol):
    """The deployment watcher as the core sees it: the current table and readiness."""

    @property
    def table(self) -> ModelTable: ...

    @property
    def ready(self) -> asyncio.Event: ...


@dataclass(slots=True)
class InferRequest:
    """One inference request, whatever the wire it came on.

    `inputs` decodes lazily (see `Decoder`). `outputs` names the outputs the
    caller wants to see (empty: all); the record holds every output anyway.
    `parent` is the caller's trace context (`parent_context`), None for a new trace.
    """

    model_name: str
    model_version: str
    inputs: Decoder
    id: str = ""
    subject_id: str = ""
    outputs: Collection[str] = ()
    parent: Context | None = None


@dataclass(slots=True)
class InferResponse:
    """The decision: the outputs asked for, and its stamp. `record_id` is empty when
    the decision was not sampled for the audit trail."""

    model_name: str
    model_version: str
    id: str
    outputs: dict[str, Array]
    trace_id: str
    record_id: str = ""

    @property
    def parameters(self) -> dict[str, str]:
        """What both transports return as response parameters."""
        params = {"trace_id": self.trace_id}
        if self.record_id:
            params["mrm_record_id"] = self.record_id
        return params


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """How one transport's inference spans look: their name and fixed attributes."""

    spans: InferenceSpans
    attributes: Mapping[str, str] = field(default_factory=dict)


def server_version() -> str:
    try:
        return version("mrm")
    except PackageNotFoundError:
        return "0"


_fields: list[Any] = [None, frozenset()]  # (propagator, the carrier keys it reads)


def parent_context(headers: Iterable[tuple[str, Any]]) -> Context | None:
    """The caller's trace context from request headers or gRPC metadata (W3C
    traceparent, or whatever OTEL_PROPAGATORS names; keys lower-case); None (a new
    trace) when the caller sent none."""
    propagator = propagate.get_global_textmap()
    if _fields[0] is not propagator:  # a composite propagator builds the set on each call
        _fields[:] = [propagator, propagator.fields]
    fields = _fields[1]
    carrier = {k: v for k, v in headers if k in fields and isinstance(v, str)}
    return propagator.extract(carrier) if carrier else None


class InferenceCore:
    """The data plane over the watcher's model table, ONNX Runtime and the shipper."""

    def __init__(
        self,
        models: Models,
        stamper: Stamper,
        sink: RecordSink,
        *,
        strict_timeout: float = 0.5,
        tracer: trace.Tracer | None = None,
        metrics: InferenceMetrics | None = None,
    ) -> None:
        self.models = models
        self.stamper = stamper
        self.sink = sink
        self.strict_timeout = strict_timeout
        self._tracer = tracer
        self._metrics = metrics
        # Strict callers block here until their group commit is durable.
        self._strict_pool = ThreadPoolExecutor(64, thread_name_prefix="mrm-strict")

    def close(self) -> None:
        self._strict_pool.shutdown(wait=True, cancel_futures=True)

    def route(self, span_name: str, attributes: Mapping[str, str]) -> Route:
        """A transport's spans (one per transport, made once)."""
        return Route(InferenceSpans(span_name, self._tracer), dict(attributes))

    # -- health and metadata ------------------------------------------------------

    @staticmethod
    def live() -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the models the registry deploys are loaded."""
        return self.models.ready.is_set()

    def model(self, name: str, model_version: str = "") -> ServingModel:
        """The model a request names (its production version when `model_version` is
        empty); InvalidArgument without a name, NotFound when it is not served."""
        if not name:
            raise InvalidArgument("model_name", "is required")
        return self.models.table.resolve(name, model_version)

    def model_ready(self, name: str, model_version: str = "") -> bool:
        try:
            self.model(name, model_version)
        except Exception:
            return False
        return True

    def metadata(self, name: str, model_version: str = "") -> ModelMetadata:
        model = self.model(name, model_version)
        return ModelMetadata(
            model.name,
            sorted(self.models.table.versions.get(model.name, {})),
            "onnxruntime_onnx",
            model.inputs,
            model.outputs,
        )

    # -- inference ----------------------------------------------------------------

    async def infer(self, request: InferRequest, route: Route) -> InferResponse:
        """Decode, check, run, stamp and offer to auditing; domain errors
        (InvalidArgument, NotFound, Unavailable) for the transport to map."""
        started = time.perf_counter()
        model = self.model(request.model_name, request.model_version)
        span = route.spans.start(
            request.parent,
            {**route.attributes, "mrm.model": model.name, "mrm.model_version": model.version},
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
                route.spans.end, span, extra, error, time.time_ns()
            )

    async def _infer(
        self, request: InferRequest, model: ServingModel, span: InferenceSpan, extra: dict[str, str]
    ) -> InferResponse:
        wanted = request.outputs
        if wanted:  # refused before any work is done
            names = [spec.name for spec in model.outputs]
            if unknown := set(wanted).difference(names):
                raise InvalidArgument(
                    "outputs",
                    f"{sorted(unknown)} are not outputs of {model.name} ({', '.join(names)})",
                )
        arrays = request.inputs(model.inputs, f"{model.name} {model.version}")
        check_finite(arrays, allow_nan=False)
        rows = len(next(iter(arrays.values()))) if arrays else 0
        if rows > _INLINE_ROWS:
            outputs = await asyncio.to_thread(model.predict, arrays)
        else:
            outputs = model.predict(arrays)
        outputs = _squeeze(outputs)
        # The caller's trace id survives even when span sampling drops the span.
        trace_id = format(span.trace_id, "032x") if span.trace_id else secrets.token_hex(16)
        response = InferResponse(
            model.name,
            model.version,
            request.id,
            {k: v for k, v in outputs.items() if k in wanted} if wanted else outputs,
            trace_id,
        )
        response.record_id = await self._stamp(request, model, span, arrays, outputs, trace_id)
        if response.record_id:
            extra["mrm.record_id"] = response.record_id
        return response

    async def _stamp(
        self,
        request: InferRequest,
        model: ServingModel,
        span: InferenceSpan,
        arrays: dict[str, Array],
        outputs: dict[str, Array],
        trace_id: str,
    ) -> str:
        """The decision's record id when sampled, '' when not.

        The record holds every output whatever the request asked to see. A strict
        model's record is durable before this returns; anyone else's is handed to
        the shipper, which builds it in its own thread.
        """
        record_id = self.stamper.new_record_id()
        if not self.stamper.sampled(record_id, model.sample_rate):
            return ""
        pending = PendingPrediction(
            self.stamper,
            record_id,
            model.name,
            model.version,
            model.onnx_sha256,
            request.subject_id,
            trace_id,
            format(span.span_id, "016x") if span.span_id else "",
            arrays,
            outputs,
            request.id,
        )
        if model.strict:
            await self._durable(pending, model)
        else:
            self.sink.offer(pending)
        return record_id

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


def _squeeze(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Labels as a flat vector whatever ONNX returned."""
    label = outputs.get("label")
    if label is not None and label.ndim > 1:
        outputs = outputs | {"label": label.reshape(-1)}
    return outputs
