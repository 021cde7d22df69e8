"""The ONNX model as the explainers see it: inputs bound to the schema, one session.

The session computes the model's own outputs and, when the graph ends in an
estimator the exact explainers read (trees, linear), that estimator's input
tensor as well: the row and the background in the transformed feature space
that the estimator sees after the pipeline's scalers and encoders.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.onnx_check import UnsafeOnnx, load_checked_onnx
from mrm.explain.types import ExplainError, plain
from mrm.kernel.schema import InputSchema

Array = np.ndarray[Any, Any]
ESTIMATOR_OPS = frozenset(
    {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "LinearClassifier", "LinearRegressor"}
)
_ELEM = {"float": onnx.TensorProto.FLOAT, "int": onnx.TensorProto.INT64}
_ELEM |= {"string": onnx.TensorProto.STRING, "bool": onnx.TensorProto.BOOL}
_NP = {"float": np.float32, "int": np.int64, "string": object, "bool": np.bool_}


def load_model(onnx_bytes: bytes) -> onnx.ModelProto:
    try:
        model = load_checked_onnx(onnx_bytes)
    except UnsafeOnnx as e:
        raise ExplainError(f"the ONNX model cannot be read: {e}") from None
    if not model.graph.input or not model.graph.output:
        raise ExplainError("the ONNX model cannot be read: its graph has no inputs or outputs")
    return model


def parse_schema(schema_json: str | bytes) -> InputSchema:
    try:
        return InputSchema.from_json(schema_json)
    except ValueError as e:
        raise ExplainError(f"the input schema is invalid: {e}") from None


def check_inputs(model: onnx.ModelProto, schema: InputSchema) -> None:
    """The graph's inputs are the ones the schema describes, by position."""
    inputs = list(model.graph.input)
    if schema.mode == "tensor":
        if len(inputs) != 1:
            raise ExplainError(
                f"schema mismatch: mode tensor needs one ONNX input, the model has {len(inputs)}"
            )
        t = inputs[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.elem_type != onnx.TensorProto.FLOAT or len(dims) != 2:
            raise ExplainError(
                f"schema mismatch: ONNX input {inputs[0].name!r} is not a float32 [N, n] tensor"
            )
        if dims[1] is not None and dims[1] != len(schema.features):
            raise ExplainError(
                f"schema mismatch: ONNX input {inputs[0].name!r} has {dims[1]} columns, "
                f"the schema {len(schema.features)} features"
            )
        return
    if len(inputs) != len(schema.features):
        raise ExplainError(
            f"schema mismatch: the schema has {len(schema.features)} features, "
            f"the ONNX model {len(inputs)} inputs"
        )
    for f, inp in zip(schema.features, inputs, strict=True):
        if inp.type.tensor_type.elem_type != _ELEM[f.dtype]:
            raise ExplainError(
                f"schema mismatch: feature {f.name!r} is {f.dtype}, "
                f"ONNX input {inp.name!r} has another element type"
            )


def find_estimator(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The one tree or linear estimator node, if the graph has exactly one."""
    found = [n for n in model.graph.node if n.op_type in ESTIMATOR_OPS and n.domain == "ai.onnx.ml"]
    return found[0] if len(found) == 1 else None


def read_background(data: bytes, schema: InputSchema) -> pd.DataFrame:
    """The background CSV as typed columns in schema order."""
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except Exception as e:  # pandas' ParserError, EmptyDataError, UnicodeDecodeError
        raise ExplainError(f"the background sample is not CSV: {e}") from None
    missing = [n for n in schema.names if n not in raw.columns]
    if missing:
        raise ExplainError(f"the background sample lacks the features {missing}")
    if raw.empty:
        raise ExplainError("the background sample has no rows")
    out: dict[str, Any] = {}
    for f in schema.features:
        col = raw[f.name]
        try:
            if f.dtype == "float":
                out[f.name] = pd.to_numeric(col.replace("", "nan")).astype(np.float64)
            elif f.dtype == "int":
                out[f.name] = pd.to_numeric(col).astype(np.int64)
            elif f.dtype == "bool":
                out[f.name] = col.map(_parse_bool).astype(bool)
            else:
                out[f.name] = col.astype(object)
        except (ValueError, TypeError) as e:
            raise ExplainError(f"background column {f.name!r} is not {f.dtype}: {e}") from None
    return pd.DataFrame(out)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"true", "1", "1.0"}:
        return True
    if low in {"false", "0", "0.0"}:
        return False
    raise ValueError(f"{text!r} is not a boolean")


@dataclass
class Graph:
    """One ONNX Runtime session over the model, bound to its schema."""

    schema: InputSchema
    session: Any  # ort.InferenceSession
    input_names: list[str]
    output_names: list[str]  # the model's own outputs, in graph order
    transformed: str | None  # the estimator's input tensor, an extra output

    @classmethod
    def build(
        cls, model: onnx.ModelProto, schema: InputSchema, estimator: onnx.NodeProto | None
    ) -> Graph:
        outputs = [o.name for o in model.graph.output]
        transformed = estimator.input[0] if estimator is not None else None
        inputs = [i.name for i in model.graph.input]
        if transformed is not None and transformed not in outputs + inputs:
            model = onnx.ModelProto.FromString(model.SerializeToString())
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(transformed))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime's Fail / InvalidGraph
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExplainError(f"ONNX Runtime cannot load the model: {line}") from None
        return cls(schema, session, inputs, outputs, transformed)

    def feeds(self, frame: pd.DataFrame) -> dict[str, Array]:
        """ONNX inputs for typed rows (a DataFrame in schema order)."""
        if self.schema.mode == "tensor":
            if list(frame.columns) != self.schema.names:  # frames built here are in order
                frame = frame[self.schema.names]
            values = frame.to_numpy(dtype=np.float32, na_value=np.nan)
            return {self.input_names[0]: values}
        out: dict[str, Array] = {}
        for f, name in zip(self.schema.features, self.input_names, strict=True):
            out[name] = frame[f.name].to_numpy(dtype=_NP[f.dtype]).reshape(-1, 1)
        return out

    def run(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        """The model's outputs and, under the name `transformed`, the estimator's input."""
        extra = self.transformed
        if extra in self.input_names:
            extra = None
        names = list(dict.fromkeys(self.output_names + ([extra] if extra else [])))
        try:
            results = self.session.run(names, dict(feeds))
        except Exception as e:  # onnxruntime's InvalidArgument / Fail
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExplainError(f"ONNX Runtime cannot run the model: {line}") from None
        out = dict(zip(names, results, strict=True))
        if self.transformed in self.input_names:
            out[self.transformed] = feeds[self.transformed]
        return out

    def request_feeds(self, inputs: Mapping[str, Any]) -> dict[str, Array]:
        """The stored request's inputs as the arrays the proxy fed to ONNX Runtime."""
        if not isinstance(inputs, Mapping):
            raise ExplainError("the request inputs are not an object of ONNX input names")
        extra = sorted(set(inputs) - set(self.input_names))
        if extra:
            raise ExplainError(f"the request has inputs the model does not take: {extra}")
        out: dict[str, Array] = {}
        if self.schema.mode == "tensor":
            name = self.input_names[0]
            arr = _array(inputs, name, np.float32)
            n = len(self.schema.features)
            if arr.ndim == 1 and arr.size == n:
                arr = arr.reshape(1, n)
            if arr.ndim != 2 or arr.shape[1] != n or arr.shape[0] == 0:
                raise ExplainError(
                    f"request input {name!r} has shape {list(arr.shape)}, want [N, {n}]"
                )
            return {name: arr}
        count: int | None = None
        for f, name in zip(self.schema.features, self.input_names, strict=True):
            arr = _array(inputs, name, _NP[f.dtype]).reshape(-1, 1)
            if count is None:
                count = arr.shape[0]
            if arr.shape[0] != count or count == 0:
                raise ExplainError(
                    f"request input {name!r} has {arr.shape[0]} rows, the others {count}"
                )
            out[name] = arr
        return out

    def rows(self, feeds: Mapping[str, Array]) -> list[dict[str, Any]]:
        """Typed feature rows (feature name -> Python value) from ONNX feeds."""
        if self.schema.mode == "tensor":
            matrix = feeds[self.input_names[0]]
            columns: list[Array] = [matrix[:, i] for i in range(matrix.shape[1])]
        else:
            columns = [feeds[name].reshape(-1) for name in self.input_names]
        rows: list[dict[str, Any]] = []
        for i in range(len(columns[0])):
            row: dict[str, Any] = {}
            for f, col in zip(self.schema.features, columns, strict=True):
                value = plain(col[i])
                if f.dtype == "float":
                    value = float(value)
                elif f.dtype == "int":
                    value = int(value)
                elif f.dtype == "bool":
                    value = bool(value)
                row[f.name] = value
            rows.append(row)
        return rows


def _array(inputs: Mapping[str, Any], name: str, dtype: Any) -> Array:
    if name not in inputs:
        raise ExplainError(f"the request lacks the ONNX input {name!r}")
    try:
        arr = np.asarray(inputs[name], dtype=dtype)
    except (ValueError, TypeError) as e:
        raise ExplainError(f"request input {name!r} does not hold {np.dtype(dtype)}: {e}") from None
    if dtype is object and any(not isinstance(v, str) for v in arr.reshape(-1)):
        raise ExplainError(f"request input {name!r} must hold strings")
    return arr


def frame_of(rows: Sequence[Mapping[str, Any]], schema: InputSchema) -> pd.DataFrame:
    """Typed rows as a DataFrame in schema order; a missing feature is an ExplainError."""
    cols: dict[str, Array] = {}
    for f in schema.features:
        try:
            values = [row[f.name] for row in rows]
        except KeyError:
            raise ExplainError(f"the row lacks the feature {f.name!r}") from None
        if f.dtype == "string":
            if not all(isinstance(v, str) for v in values):
                raise ExplainError(f"feature {f.name!r} must be a string")
            cols[f.name] = np.array(values, dtype=object)
            continue
        if any(isinstance(v, str) for v in values):
            raise ExplainError(f"feature {f.name!r} is not {f.dtype}: got a string")
        try:
            cols[f.name] = np.asarray(values, dtype=_ROW_TYPES[f.dtype])
        except (ValueError, TypeError) as e:
            raise ExplainError(f"feature {f.name!r} is not {f.dtype}: {e}") from None
    return pd.DataFrame(cols)


_ROW_TYPES = {"float": np.float64, "int": np.int64, "bool": np.bool_}
