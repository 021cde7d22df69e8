"""Input schemas from training data, and training data in the form a model takes.

The schema itself (features, dtypes, positions, its canonical JSON) is
mrm.kernel.schema: the proxy, Explain and the monitor read it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import FeatureUnion, Pipeline  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.errors import DeployError
from mrm.kernel.schema import Dtype, Feature, InputSchema, Mode

_KIND_DTYPES: dict[str, Dtype] = {"b": "bool", "i": "int", "u": "int", "f": "float"}
_ONNX_DTYPES: dict[str, Any] = {
    "int": np.int64,
    "string": object,
    "bool": bool,
}


def components(estimator: Any) -> Iterator[Any]:
    """The estimator and, recursively, every step inside its Pipelines and ColumnTransformers."""
    yield estimator
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            yield from components(step)
    elif isinstance(estimator, ColumnTransformer):
        # transformers_ (fitted) holds the fitted clones; transformers holds unfitted originals.
        for _, step, _ in getattr(estimator, "transformers_", estimator.transformers):
            yield from components(step)
    elif isinstance(estimator, FeatureUnion):
        for _, step in estimator.transformer_list:
            yield from components(step)


def _column_dtype(name: str, dtype: Any) -> Dtype:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "string"
    raise DeployError(
        f"feature {name!r} has dtype {dtype}, which cannot be served (use float, int, bool or str)"
    )


def _check_names(names: list[str], expected: list[str]) -> None:
    if set(names) != set(expected):
        extra = [n for n in names if n not in expected]
        missing = [n for n in expected if n not in names]
        raise DeployError(
            f"data columns differ from the model's features: extra {extra}, missing {missing}"
        )


def infer_schema(estimator: Any, X: Any) -> InputSchema:
    """The schema of `X` as `estimator` takes it; positions follow the model's feature order."""
    fitted_names = getattr(estimator, "feature_names_in_", None)
    n_expected = getattr(estimator, "n_features_in_", None)
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if fitted_names is not None:
            _check_names(names, [str(n) for n in fitted_names])
            names = [str(n) for n in fitted_names]
        dtypes = [_column_dtype(n, X[n].dtype) for n in names]
        # A ColumnTransformer fitted on named columns selects them by name, which
        # skl2onnx can only follow with one ONNX input per column.
        by_name = fitted_names is not None and any(
            isinstance(c, ColumnTransformer) for c in components(estimator)
        )
        mode: Mode = "columns" if by_name or "string" in dtypes else "tensor"
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise DeployError(f"features must be a 2-D table, got an array of shape {arr.shape}")
        if arr.dtype.kind not in _KIND_DTYPES:
            raise DeployError(
                f"features are an array of dtype {arr.dtype}; pass a DataFrame with named columns"
            )
        if fitted_names is not None:
            names = [str(n) for n in fitted_names]
        else:
            names = [f"x{i}" for i in range(arr.shape[1])]
        dtypes = [_KIND_DTYPES[arr.dtype.kind]] * arr.shape[1]
        mode = "tensor"
    if n_expected is not None and len(names) != n_expected:
        raise DeployError(f"data has {len(names)} features, the model takes {n_expected}")
    feats = tuple(Feature(n, d, i) for i, (n, d) in enumerate(zip(names, dtypes, strict=True)))
    return InputSchema(feats, mode)


def _frame(schema: InputSchema, X: Any) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X), columns=schema.names)


def onnx_inputs(schema: InputSchema, X: Any) -> list[np.ndarray[Any, Any]]:
    """The ONNX model's inputs for the rows of `X`, in the order the model declares them."""
    frame = _frame(schema, X)
    if schema.mode == "tensor":
        return [frame[schema.names].to_numpy(dtype=np.float32, na_value=np.nan)]
    out: list[np.ndarray[Any, Any]] = []
    for f in schema.features:
        col = frame[[f.name]]
        if f.dtype == "float":
            out.append(col.to_numpy(dtype=np.float32, na_value=np.nan))
            continue
        if col.isna().any().any():  # only float tensors can carry a missing value
            raise DeployError(
                f"feature {f.name!r} ({f.dtype}) has missing values the ONNX model cannot take"
            )
        out.append(col.to_numpy(dtype=_ONNX_DTYPES[f.dtype]))
    return out


def sklearn_input(estimator: Any, schema: InputSchema, X: Any) -> Any:
    """`X` in the form `estimator` was fitted on: a DataFrame if it knows feature names."""
    if getattr(estimator, "feature_names_in_", None) is not None:
        return _frame(schema, X)[schema.names]
    return X[schema.names].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
