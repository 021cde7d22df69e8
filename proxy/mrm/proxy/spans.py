"""One SERVER span per inference, at a fraction of the SDK's per-span cost.

The OpenTelemetry SDK's `start_span` builds a mutable Span (a lock, attributes
validated one by one into a BoundedAttributes, a copy into a ReadableSpan at
`end`), a third of the inference handler's time (benchmarks/results/README.md).
An inference span is never made current, never gets events or links, and its
attributes are strings the proxy chooses, so none of that is needed.
`InferenceSpans` keeps what matters and does it once:

- the tracer's id generator makes the ids when the span starts (the response
  and the record carry them);
- the tracer's own sampler decides, with the caller's parent context, exactly
  as `start_span` would (parent-based, ratio, always_off, a custom one), but
  at the end, which the proxy runs once the response is on its way; the flags
  and trace state are set as the SDK sets them;
- a span the sampler records is handed, finished, to the tracer's span
  processors as one `ReadableSpan` with the tracer's resource and scope, so
  the exporters (OTLP, Jaeger) receive what the SDK's own span would give them.

This needs the SDK's tracer and processors whose `on_start` does nothing (the
SDK's batch and simple processors; `on_start` is never called). With anything
else (the API's no-op tracer, a vendor's SDK, a custom processor, the SDK's
internal metrics switched on) it uses `start_span` and `end` unchanged.
Attribute limits (count, value length) and what a sampler adds are applied with
the SDK's own BoundedAttributes, as its span does.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, TypeGuard

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger(__name__)
_KIND = SpanKind.SERVER
_QUIET_ON_START = (BatchSpanProcessor, SimpleSpanProcessor)  # their on_start is a no-op
_SAMPLED, _DROP = Decision.RECORD_AND_SAMPLE, Decision.DROP


@dataclass(slots=True)
class InferenceSpan:
    """A started inference span: its ids (for the response and the record) and what
    `InferenceSpans.end` needs. Ids of 0: no valid span (a no-op tracer)."""

    trace_id: int
    span_id: int
    start_ns: int = 0
    parent: Context | None = None  # the caller's context, for the sampler
    parent_span: SpanContext | None = None
    attributes: dict[str, Any] | None = None
    random_id: bool = False
    sdk_span: trace.Span | None = None  # the ordinary path's span


class InferenceSpans:
    """Starts and ends the proxy's inference spans; see the module docstring."""

    def __init__(self, name: str, tracer: trace.Tracer | None = None) -> None:
        self.name = name
        self._given = tracer
        self._tracer: trace.Tracer | None = None
        self._fast: SdkTracer | None = None
        self._seen: tuple[Any, Any] = (None, None)  # what the fast-path decision was made on
        self._warned = False

    def _resolve(self) -> trace.Tracer:
        """The tracer, looked up once a provider is installed (get_tracer hands out a
        proxy before that), and whether the fast path can serve it."""
        tracer = self._given or trace.get_tracer("mrm.proxy")
        inner = getattr(tracer, "_tracer", None)  # the API's ProxyTracer delegates here
        if isinstance(tracer, trace.ProxyTracer):
            if inner is None or isinstance(inner, trace.NoOpTracer):
                return tracer  # no provider yet: look again next time
            tracer = inner
        self._tracer = tracer
        self._fast = tracer if fast_path_applies(tracer) else None
        self._seen = _state(tracer)
        return tracer

    @property
    def fast(self) -> bool:
        """Whether spans take the fast path."""
        if self._tracer is None:
            self._resolve()
        return self._fast is not None

    def start(self, parent: Context | None, attributes: dict[str, Any]) -> InferenceSpan:
        """The span's ids, now; the sampler and the rest wait for `end`, which the
        proxy runs after the response is on its way. Never raises: a tracer that
        fails gives ids of 0 (the proxy then makes its own trace id)."""
        try:
            return self._start(parent, attributes)
        except Exception:
            self._warn()
            return InferenceSpan(0, 0)

    def _start(self, parent: Context | None, attributes: dict[str, Any]) -> InferenceSpan:
        tracer = self._tracer
        if tracer is None or _state(tracer) != self._seen:  # processors or config changed
            tracer = self._resolve()
        fast = self._fast
        if fast is None:
            span = tracer.start_span(self.name, context=parent, kind=_KIND, attributes=attributes)
            ctx = span.get_span_context()
            valid = ctx.is_valid
            return InferenceSpan(
                ctx.trace_id if valid else 0, ctx.span_id if valid else 0, sdk_span=span
            )
        start_ns = time.time_ns()
        parent_ctx = trace.get_current_span(parent).get_span_context()
        ids = fast.id_generator
        if parent_ctx.is_valid:
            trace_id, parent_span = parent_ctx.trace_id, parent_ctx
            random_id = parent_ctx.trace_flags.random_trace_id
        else:
            trace_id, parent_span = ids.generate_trace_id(), None
            random_id = ids.is_trace_id_random()
        span_id = ids.generate_span_id()
        return InferenceSpan(
            trace_id, span_id, start_ns, parent, parent_span, attributes, random_id
        )

    def end(
        self, span: InferenceSpan, extra: dict[str, Any], error: str = "", end_ns: int = 0
    ) -> None:
        """Finish the span with `extra` attributes and, when `error`, an ERROR status;
        `end_ns` is when it ended (now when 0). Never raises: tracing must not
        fail an inference, even from a broken sampler or processor."""
        try:
            self._end(span, extra, error, end_ns or time.time_ns())
        except Exception:
            self._warn()

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            log.exception("inference span could not be recorded; tracing goes on")

    def _end(self, span: InferenceSpan, extra: dict[str, Any], error: str, end_ns: int) -> None:
        if span.sdk_span is not None:
            if span.sdk_span.is_recording():
                span.sdk_span.set_attributes(extra)
                if error:
                    span.sdk_span.set_status(Status(StatusCode.ERROR, error))
            span.sdk_span.end(end_ns)
            return
        fast = self._fast
        if fast is None or span.attributes is None:
            return
        result = fast.sampler.should_sample(
            span.parent, span.trace_id, self.name, _KIND, span.attributes, ()
        )
        if result.decision is _DROP:
            return
        flags = TraceFlags.SAMPLED if result.decision is _SAMPLED else TraceFlags.DEFAULT
        if span.random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            span.trace_id,
            span.span_id,
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=result.trace_state,
        )
        attributes: Any = dict(result.attributes or {})
        attributes.update(extra)
        limits = fast._span_limits
        cap, max_len = limits.max_span_attributes, limits.max_span_attribute_length
        added = len(result.attributes or ()) != len(span.attributes)  # by the sampler
        if added or max_len is not None or (cap is not None and len(attributes) > cap):
            # cleaned, truncated and bounded as the SDK's span does, the dropped counted
            attributes = BoundedAttributes(cap, attributes, immutable=True, max_value_len=max_len)
        fast.span_processor.on_end(
            ReadableSpan(
                name=self.name,
                context=context,
                parent=span.parent_span,
                resource=fast.resource,
                attributes=attributes,
                kind=_KIND,
                status=Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET),
                start_time=span.start_ns,
                end_time=end_ns,
                instrumentation_info=fast.instrumentation_info,
                instrumentation_scope=fast._instrumentation_scope,
            )
        )


def _state(tracer: trace.Tracer) -> tuple[Any, Any]:
    """What the fast-path decision depends on that can change at run time: the
    provider's processors (a tuple, replaced when one is added) and the tracer's
    configuration (replaced when it is reconfigured)."""
    processors = getattr(getattr(tracer, "span_processor", None), "_span_processors", None)
    return processors, getattr(tracer, "_tracer_config", None)


def fast_path_applies(tracer: trace.Tracer) -> TypeGuard[SdkTracer]:
    """The SDK's tracer, enabled, without internal metrics, with quiet processors."""
    if type(tracer) is not SdkTracer:
        return False
    if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true":
        return False
    config = getattr(tracer, "_tracer_config", None)
    if not getattr(config, "is_enabled", False) or not hasattr(tracer, "_instrumentation_scope"):
        return False
    if getattr(tracer, "_span_limits", None) is None:
        return False
    processor = tracer.span_processor
    if not isinstance(processor, SynchronousMultiSpanProcessor):
        return False
    inner = getattr(processor, "_span_processors", None)
    return isinstance(inner, tuple) and all(type(p) in _QUIET_ON_START for p in inner)
