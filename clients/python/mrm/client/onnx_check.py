"""The one check of ONNX bytes before anything loads or runs them.

`mrmctl deploy` runs it on what it converted, the inference proxy on what it is
about to serve, the Explain service on what it is about to explain: a model is
one self-contained file using only the standard operator domains. External
data (a path the runtime would open) and custom domains (code the runtime
would have to load) are refused anywhere in the model, subgraphs included.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx
from onnx.external_data_helper import uses_external_data

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


class UnsafeOnnx(ValueError):
    """The bytes are not an ONNX model MRM will run; the message says why, in one line."""


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _graphs(sub)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_checked_onnx(data: bytes) -> onnx.ModelProto:
    """The parsed model, or UnsafeOnnx naming what is wrong."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError, and onnx's own errors
        raise UnsafeOnnx(f"the ONNX model is invalid: {_first_line(e)}") from None
    # Refusals first: the checker would only say that an external file is missing.
    if model.functions:
        raise UnsafeOnnx("the ONNX model defines local functions, which MRM refuses")
    domains = {o.domain for o in model.opset_import}
    for graph in _graphs(model.graph):
        domains |= {n.domain for n in graph.node}
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        tensors += [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        tensors += [t for n in graph.node for a in n.attribute for t in a.tensors]
        if any(uses_external_data(t) for t in tensors):
            raise UnsafeOnnx("the ONNX model keeps tensors in external files; it must be one file")
    if odd := sorted(domains - STANDARD_DOMAINS):
        raise UnsafeOnnx(f"the ONNX model uses operator domains {odd}; only ai.onnx and ai.onnx.ml")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise UnsafeOnnx(f"the ONNX model is invalid: {_first_line(e)}") from None
    return model
