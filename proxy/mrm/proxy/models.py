"""The models the proxy serves: ONNX Runtime sessions, loaded safely, swapped atomically.

A `ServingModel` is immutable once built. The `ModelTable` maps names and
versions to them and is replaced whole on every change (one reference
assignment), so a request that already holds a model finishes on it while new
requests see the new table: a hot swap fails no request.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

from mrm.client.onnx_check import UnsafeOnnx, load_checked_onnx
from mrm.core.errors import FailedPrecondition, NotFound
from mrm.proxy.tensors import TensorSpec

log = logging.getLogger(__name__)

_OIP_TYPES = {"float": "FP32", "int": "INT64", "string": "BYTES", "bool": "BOOL"}
_NUMPY = {"FP32": np.float32, "INT64": np.int64, "BOOL": np.bool_, "BYTES": object}


@dataclass(frozen=True)
class ServingModel:
    name: str
    version: str
    stage: str
    sample_rate: float
    session: Any  # ort.InferenceSession
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    mode: str
    onnx_sha256: str
    classes: tuple[Any, ...] = ()
    strict: bool = False
    """Each decision's record is durable before the response goes out (rate 1)."""
    # (spec name, ONNX input name, numpy type) per input, bound by position
    # (skl2onnx may rename inputs); computed once, not per request.
    _binding: tuple[tuple[str, str, Any], ...] = field(default=(), init=False, repr=False)
    _output_names: tuple[str, ...] = field(default=(), init=False, repr=False)
    _run: Any = field(default=None, init=False, repr=False)
    _onnx_outputs: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        names = [i.name for i in self.session.get_inputs()]
        binding = tuple(
            (spec.name, onnx_name, _NUMPY[spec.datatype])
            for onnx_name, spec in zip(names, self.inputs, strict=True)
        )
        object.__setattr__(self, "_binding", binding)
        object.__setattr__(self, "_output_names", tuple(s.name for s in self.outputs))
        object.__setattr__(self, "_onnx_outputs", tuple(o.name for o in self.session.get_outputs()))
        object.__setattr__(self, "_run", _runner(self.session))

    def feeds(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """The ONNX feeds, bound by position (skl2onnx may rename inputs)."""
        out: dict[str, np.ndarray[Any, Any]] = {}
        columns = self.mode == "columns"
        for name, onnx_name, dtype in self._binding:
            arr = arrays[name]
            if columns and arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            out[onnx_name] = arr if arr.dtype == dtype else arr.astype(dtype)
        return out

    def predict(
        self, arrays: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        results = self._run(self._onnx_outputs, self.feeds(arrays), None)
        return dict(zip(self._output_names, results, strict=True))


def _runner(session: Any) -> Any:
    """ONNX Runtime's run without its Python wrapper's per-call checks, which the
    proxy's feeds always pass (every input bound, numpy arrays, the CPU provider,
    no graph capture): the wrapper calls exactly this after them. The public
    `session.run` when this onnxruntime does not have it."""
    run = getattr(getattr(session, "_sess", None), "run", None)
    return run if callable(run) else session.run


def check_onnx(data: bytes) -> onnx.ModelProto:
    """Refuse what a served model must not do: external data, custom operators."""
    try:
        return load_checked_onnx(data)
    except UnsafeOnnx as e:
        raise FailedPrecondition(str(e)) from None


def _session(data: bytes, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


_loader = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="onnx-load")


def build(
    name: str,
    version: str,
    stage: str,
    sample_rate: float,
    onnx_bytes: bytes,
    onnx_sha256: str,
    schema_json: bytes,
    *,
    threads: int = 1,
    load_timeout: float = 60.0,
    strict: bool = False,
) -> ServingModel:
    """Check and load one version. A load that takes longer than `load_timeout` fails
    (its thread is abandoned; the server keeps serving what it had)."""
    check_onnx(onnx_bytes)
    future = _loader.submit(_session, onnx_bytes, threads)
    try:
        session = future.result(timeout=load_timeout)
    except concurrent.futures.TimeoutError:
        raise FailedPrecondition(f"{name} {version}: loading took over {load_timeout}s") from None
    except Exception as e:
        raise FailedPrecondition(f"{name} {version}: ONNX Runtime cannot load it: {e}") from None
    schema = json.loads(schema_json)
    features = sorted(schema["features"], key=lambda f: f["position"])
    if schema["mode"] == "tensor":
        onnx_in = session.get_inputs()[0]
        inputs: tuple[TensorSpec, ...] = (TensorSpec(onnx_in.name, "FP32", (-1, len(features))),)
    else:
        inputs = tuple(TensorSpec(f["name"], _OIP_TYPES[f["dtype"]], (-1, 1)) for f in features)
    outs = session.get_outputs()
    if len(outs) == 2:  # a classifier: label, probabilities
        label_type = "BYTES" if "string" in outs[0].type else "INT64"
        outputs: tuple[TensorSpec, ...] = (
            TensorSpec("label", label_type, (-1,)),
            TensorSpec("probabilities", "FP32", (-1, -1)),
        )
    else:
        outputs = (TensorSpec("value", "FP32", (-1, 1)),)
    return ServingModel(
        name,
        version,
        stage,
        1.0 if strict else sample_rate,  # strict records every decision
        session,
        inputs,
        outputs,
        schema["mode"],
        onnx_sha256,
        strict=strict,
    )


@dataclass(frozen=True)
class ModelTable:
    """An immutable snapshot: name -> version -> model, and each name's production version."""

    versions: Mapping[str, Mapping[str, ServingModel]] = field(default_factory=dict)
    production: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, name: str, version: str) -> ServingModel:
        by_version = self.versions.get(name)
        if not by_version:
            raise NotFound(f"model {name!r} is not deployed on this proxy")
        chosen = version or self.production.get(name, "")
        if not chosen:
            raise NotFound(f"model {name!r} has no version in production (ask for one by version)")
        model = by_version.get(chosen)
        if model is None:
            raise NotFound(
                f"{name} {chosen} is not deployed (deployed: {', '.join(sorted(by_version))})"
            )
        return model

    def with_model(self, model: ServingModel) -> ModelTable:
        versions = {k: dict(v) for k, v in self.versions.items()}
        versions.setdefault(model.name, {})[model.version] = model
        production = dict(self.production)
        if model.stage == "PRODUCTION":
            production[model.name] = model.version
        elif production.get(model.name) == model.version:
            del production[model.name]
        return ModelTable(versions, production)

    def without(self, name: str, version: str) -> ModelTable:
        versions = {k: dict(v) for k, v in self.versions.items()}
        versions.get(name, {}).pop(version, None)
        production = {k: v for k, v in self.production.items() if (k, v) != (name, version)}
        return ModelTable(versions, production)
