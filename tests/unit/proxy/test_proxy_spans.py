"""The proxy's one-step inference spans export what the SDK's own spans would.

Each case makes the same span twice, once with `InferenceSpans` and once with
the SDK's `start_span`/`end`, under the same sampler and parent, and compares
what the exporter received field by field (ids aside, which are random)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mrm.proxy.spans import InferenceSpans

NAME = "/inference.GRPCInferenceService/ModelInfer"
ATTRS = {"rpc.system": "grpc", "mrm.model": "credit", "mrm.model_version": "1.2.4"}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def parent(sampled: bool) -> Context:
    flags = "01" if sampled else "00"
    carrier = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-{flags}"}
    return TraceContextTextMapPropagator().extract(carrier)


def provider(sampler: Sampler) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "proxy"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def fields(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent,
        "attributes": dict(span.attributes or {}),
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource.attributes,
        "scope": span.instrumentation_scope,
        "flags": span.context.trace_flags,
        "state": span.context.trace_state,
        "remote": span.context.is_remote,
        "dropped": span.dropped_attributes,
        "events": list(span.events),
        "links": list(span.links),
    }


def both(
    sampler: Sampler, ctx: Context | None, error: str = ""
) -> tuple[list[ReadableSpan], list[ReadableSpan], list[int]]:
    """(fast path's spans, SDK's spans, the fast path's trace ids). The ids (which
    the proxy puts on responses and records) are valid, recorded or not."""
    tp, exported = provider(sampler)
    spans = InferenceSpans(NAME, tp.get_tracer("mrm.proxy"))
    assert spans.fast
    started = spans.start(ctx, dict(ATTRS))
    spans.end(started, {"mrm.record_id": "r-1"}, error)
    fast = list(exported.get_finished_spans())

    tp2, exported2 = provider(sampler)
    sdk = tp2.get_tracer("mrm.proxy").start_span(NAME, ctx, SpanKind.SERVER, dict(ATTRS))
    sdk.set_attributes({"mrm.record_id": "r-1"})
    if error:
        sdk.set_status(trace.Status(StatusCode.ERROR, error))
    sdk.end()
    theirs = sdk.get_span_context()
    assert started.trace_id != 0
    assert started.span_id != 0
    if ctx is not None:
        assert started.trace_id == theirs.trace_id
    if fast:
        assert fast[0].context is not None
        assert (fast[0].context.trace_id, fast[0].context.span_id) == (
            started.trace_id,
            started.span_id,
        )
    return fast, list(exported2.get_finished_spans()), [started.trace_id]


@pytest.mark.parametrize(
    ("sampler", "ctx"),
    [
        (ParentBased(ALWAYS_ON), None),
        (ParentBased(ALWAYS_ON), parent(True)),
        (ParentBased(ALWAYS_ON), parent(False)),  # recorded by nobody, id kept
        (ALWAYS_OFF, None),
        (ALWAYS_ON, parent(False)),
        (TraceIdRatioBased(1.0), None),
    ],
    ids=["root", "sampled-parent", "unsampled-parent", "always-off", "always-on", "ratio"],
)
def test_same_span_as_the_sdk(sampler: Sampler, ctx: Context | None) -> None:
    fast, sdk, [trace_id] = both(sampler, ctx)
    assert [fields(s) for s in fast] == [fields(s) for s in sdk]
    if ctx is not None:  # the caller's trace continues, recorded or not
        assert format(trace_id, "032x") == TRACE
    for span in fast:
        assert span.context is not None
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.end_time >= span.start_time
        assert dict(span.attributes or {})["mrm.record_id"] == "r-1"


def test_error_status_as_the_sdk() -> None:
    fast, sdk, _ = both(ParentBased(ALWAYS_ON), None, "InvalidArgument: inputs: wrong shape")
    assert [fields(s) for s in fast] == [fields(s) for s in sdk]
    assert fast[0].status.status_code is StatusCode.ERROR


def test_parent_link_and_fresh_ids() -> None:
    fast, _, _ = both(ParentBased(ALWAYS_ON), parent(True))
    [span] = fast
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.context is not None
    assert span.context.span_id != span.parent.span_id


class Recorder(SpanProcessor):
    """A processor whose on_start matters: the fast path must not skip it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


def test_custom_processor_gets_the_sdk_path() -> None:
    tp, _ = provider(ParentBased(ALWAYS_ON))
    recorder = Recorder()
    tp.add_span_processor(recorder)
    spans = InferenceSpans(NAME, tp.get_tracer("mrm.proxy"))
    assert not spans.fast
    started = spans.start(None, dict(ATTRS))
    assert started.sdk_span is not None
    assert started.sdk_span.is_recording()
    assert started.trace_id != 0
    spans.end(started, {"mrm.record_id": "r-1"})
    assert recorder.started == recorder.ended == [NAME]


def test_no_sdk_no_spans_but_no_errors() -> None:
    spans = InferenceSpans(NAME, trace.NoOpTracer())
    assert not spans.fast
    started = spans.start(parent(True), dict(ATTRS))
    assert format(started.trace_id, "032x") == TRACE  # the caller's trace goes on
    spans.end(started, {"mrm.record_id": "r-1"}, "boom")
    alone = spans.start(None, dict(ATTRS))
    assert (alone.trace_id, alone.span_id) == (0, 0)  # the proxy makes its own trace id
    spans.end(alone, {})


class Broken(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sampler bug")

    def get_description(self) -> str:
        return "broken"


def test_a_broken_sampler_never_fails_an_inference(caplog: pytest.LogCaptureFixture) -> None:
    tp, exported = provider(Broken())
    spans = InferenceSpans(NAME, tp.get_tracer("mrm.proxy"))
    for _ in range(3):
        started = spans.start(None, dict(ATTRS))
        assert started.trace_id != 0
        spans.end(started, {})
    assert not exported.get_finished_spans()
    assert caplog.text.count("inference span could not be recorded") == 1  # logged once


def test_an_attribute_length_limit_as_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    fast, sdk, _ = both(ParentBased(ALWAYS_ON), None)
    assert [fields(s) for s in fast] == [fields(s) for s in sdk]
    assert dict(fast[0].attributes or {})["mrm.model"] == "cred"  # truncated, as configured


def test_global_provider_installed_later() -> None:
    """A servicer made before the provider is installed finds it on its first span."""
    spans = InferenceSpans(NAME)
    tp, exported = provider(ParentBased(ALWAYS_ON))
    real = trace.get_tracer_provider

    def installed() -> trace.TracerProvider:
        return tp

    try:
        trace.get_tracer_provider = installed
        spans.end(spans.start(None, dict(ATTRS)), {})
    finally:
        trace.get_tracer_provider = real
    assert [s.name for s in exported.get_finished_spans()] == [NAME]


@pytest.mark.parametrize("limit", ["3", "6", "7"])
def test_an_attribute_count_limit_as_the_sdk(monkeypatch: pytest.MonkeyPatch, limit: str) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", limit)
    fast, sdk, _ = both(ParentBased(ALWAYS_ON), None)
    assert [fields(s) for s in fast] == [fields(s) for s in sdk]
    assert len(fast[0].attributes or {}) == min(int(limit), len(ATTRS) + 1)


class Adding(Sampler):
    """A sampler that adds attributes, one of a type the SDK cleans (a list)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        result = ALWAYS_ON.should_sample(*args, **kwargs)
        extra: dict[str, Any] = {"sampler.tags": ["a", "b"], "sampler.rate": 1.0}
        given: dict[str, Any] = dict(result.attributes or {})
        return type(result)(result.decision, given | extra)

    def get_description(self) -> str:
        return "adding"


def test_attributes_a_sampler_adds_are_cleaned_as_the_sdk() -> None:
    fast, sdk, _ = both(Adding(), None)
    assert [fields(s) for s in fast] == [fields(s) for s in sdk]
    assert dict(fast[0].attributes or {})["sampler.tags"] == ("a", "b")


def test_a_processor_added_later_is_honoured() -> None:
    tp, exported = provider(ParentBased(ALWAYS_ON))
    spans = InferenceSpans(NAME, tp.get_tracer("mrm.proxy"))
    spans.end(spans.start(None, dict(ATTRS)), {})
    assert spans.fast
    recorder = Recorder()
    tp.add_span_processor(recorder)  # its on_start must now be called
    spans.end(spans.start(None, dict(ATTRS)), {})
    assert not spans.fast
    assert recorder.started == recorder.ended == [NAME]
    assert len(exported.get_finished_spans()) == 2


def test_a_failing_tracer_on_the_sdk_path_never_fails_an_inference() -> None:
    tp, _ = provider(Broken())
    tp.add_span_processor(Recorder())  # the SDK path, whose start_span runs the sampler
    spans = InferenceSpans(NAME, tp.get_tracer("mrm.proxy"))
    started = spans.start(None, dict(ATTRS))
    assert (started.trace_id, started.span_id) == (0, 0)
    spans.end(started, {})
