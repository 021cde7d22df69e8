"""The model-agnostic fallback: shap's KernelExplainer on the ONNX model, seeded.

It works in the original feature space. Strings cannot enter the kernel's
numeric matrix, so each string feature is coded by its position in a sorted
vocabulary (the background's values and the row's); the prediction function
decodes the codes before it calls ONNX Runtime. Kernel SHAP only ever mixes
the row's and the background's values, never interpolates, so every code it
produces decodes to a real value.

KernelExplainer draws coalitions from numpy's global generator; the draw is
seeded and the generator's state restored, under a lock, so two runs agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import shap  # type: ignore[import-untyped,unused-ignore]

from mrm.kernel.schema import InputSchema

Array = np.ndarray[Any, Any]
SEED = 0
TOLERANCE = 1e-5  # additivity; Kernel SHAP enforces base + sum = output in its regression
_LOCK = threading.Lock()


@dataclass(frozen=True)
class KernelResult:
    shap: Array  # [rows, features]
    base: float
    outputs: Array  # [rows] f(row)
    nsamples: int


class Codec:
    """Typed rows <-> the float matrix the kernel explainer works on."""

    def __init__(self, schema: InputSchema, frames: list[pd.DataFrame]) -> None:
        self.schema = schema
        self.vocab: dict[str, list[str]] = {}
        for f in schema.features:
            if f.dtype == "string":
                values = {str(v) for fr in frames for v in fr[f.name]}
                self.vocab[f.name] = sorted(values)

    def encode(self, frame: pd.DataFrame) -> Array:
        cols = []
        for f in self.schema.features:
            if f.dtype == "string":
                index = {v: i for i, v in enumerate(self.vocab[f.name])}
                cols.append(np.array([index[str(v)] for v in frame[f.name]], dtype=np.float64))
            else:
                cols.append(frame[f.name].to_numpy(dtype=np.float64))
        return np.column_stack(cols)

    def decode(self, X: Array) -> pd.DataFrame:
        out: dict[str, Any] = {}
        for i, f in enumerate(self.schema.features):
            col = X[:, i]
            if f.dtype == "string":
                words = np.asarray(self.vocab[f.name], dtype=object)
                out[f.name] = words[np.rint(col).astype(np.int64)]
            elif f.dtype == "int":
                out[f.name] = np.rint(col).astype(np.int64)
            elif f.dtype == "bool":
                out[f.name] = col != 0
            else:
                out[f.name] = col
        return pd.DataFrame(out)


def kernel_shap(
    schema: InputSchema,
    background: pd.DataFrame,
    rows: pd.DataFrame,
    predict: Callable[[pd.DataFrame], Array],
) -> KernelResult:
    """Kernel SHAP of `predict` (typed rows -> one number each) for `rows`."""
    codec = Codec(schema, [background, rows])

    def f(X: Array) -> Array:
        return predict(codec.decode(np.asarray(X, dtype=np.float64)))

    data = codec.encode(background)
    X = codec.encode(rows)
    with _LOCK:
        state = np.random.get_state()
        try:
            np.random.seed(SEED)
            explainer = shap.KernelExplainer(f, data, link="identity")
            values = explainer.shap_values(X, silent=True, l1_reg=False)
        finally:
            np.random.set_state(state)
    phi = np.asarray(values, dtype=np.float64).reshape(len(X), len(schema.features))
    return KernelResult(
        shap=phi,
        base=float(np.asarray(explainer.expected_value).reshape(-1)[0]),
        outputs=f(X),
        nsamples=int(explainer.nsamples),
    )
