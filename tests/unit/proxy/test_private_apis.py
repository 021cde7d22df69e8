"""The private APIs the proxy's hot path relies on, each confined to one module and
upper-bounded in pyproject.toml. These tests fail when a release changes them, so
the bound is raised only after the code is checked against the new release:

- mrm.proxy.models: `InferenceSession._sess.run(output_names, feeds, run_options)`,
  ONNX Runtime's pybind session, which the public `run` calls after per-call checks
  the proxy's feeds always pass (about 1 µs a decision);
- mrm.proxy.spans: the SDK tracer's `_span_limits`, `_instrumentation_scope`,
  `_tracer_config` and its processor's `_span_processors` tuple, and the API's
  `ProxyTracer._tracer`, from which one `ReadableSpan` is built per decision
  (about 18 µs less than the SDK's mutable span).

Without them the proxy still works (the public paths), only slower: the fallbacks
are what these tests make visible.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from packaging.requirements import Requirement
from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]

from mrm.proxy.models import _runner
from mrm.proxy.spans import InferenceSpans, fast_path_applies

PYPROJECT = Path(__file__).parents[3] / "pyproject.toml"


def _requirement(name: str) -> Requirement:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [req] = [Requirement(d) for d in deps if Requirement(d).name == name]
    return req


@pytest.mark.parametrize("name", ["onnxruntime", "opentelemetry-sdk"])
def test_the_private_apis_are_used_only_under_an_upper_bound(name: str) -> None:
    req = _requirement(name)
    assert any(s.operator == "<" for s in req.specifier), f"{name} needs an upper bound"
    assert req.specifier.contains(version(name)), f"{name} {version(name)} is outside {req}"


def test_onnx_runtime_sessions_still_have_the_run_the_proxy_calls() -> None:
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    inner = session._sess
    assert callable(getattr(inner, "run", None))
    # run(self, output_names: Sequence[str], feeds: Mapping[str, object], RunOptions) -> list
    doc = type(inner).run.__doc__ or ""
    shape = (
        r"run\(self: [\w.]+, arg0: [\w.]*Sequence\[str\], "
        r"arg1: [\w.]*Mapping\[str, object\], arg2: [\w.]*RunOptions\) -> list"
    )
    assert re.match(shape, doc), doc
    assert _runner(session) == inner.run  # the proxy took the private path
    names = [o.name for o in session.get_outputs()]
    feeds = {session.get_inputs()[0].name: X[:5]}
    for got, want in zip(inner.run(names, feeds, None), session.run(names, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


def test_the_sdk_tracer_still_has_what_the_fast_span_path_reads() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    try:
        tracer: Any = provider.get_tracer("mrm.proxy")
        limits = tracer._span_limits
        assert hasattr(limits, "max_span_attributes")
        assert hasattr(limits, "max_span_attribute_length")
        assert tracer._instrumentation_scope is not None
        assert isinstance(tracer._tracer_config.is_enabled, bool)
        assert isinstance(tracer.span_processor, SynchronousMultiSpanProcessor)
        assert isinstance(tracer.span_processor._span_processors, tuple)
        for public in ("id_generator", "sampler", "resource", "instrumentation_info"):
            assert hasattr(tracer, public), public
        params = inspect.signature(ReadableSpan.__init__).parameters
        assert {"instrumentation_scope", "instrumentation_info", "resource"} <= set(params)
        assert fast_path_applies(tracer)
        assert InferenceSpans("x", tracer).fast
        # The API's ProxyTracer (get_tracer before a provider is set) delegates here.
        assert isinstance(inspect.getattr_static(trace.ProxyTracer, "_tracer"), property)
    finally:
        provider.shutdown()
