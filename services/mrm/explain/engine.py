"""The explanation engine: SHAP values of one decision, computed from the ONNX model.

Services never unpickle: everything here starts from the ONNX bytes that
`mrmctl deploy` archived, the input schema and the background sample.

- Tree ensembles (ai.onnx.ml TreeEnsembleClassifier/Regressor) get exact
  interventional TreeSHAP: the trees are read out of the graph into shap's own
  dict model and explained by shap.TreeExplainer against the background.
- Linear models (LinearClassifier/Regressor) get exact linear SHAP,
  w_i (x_i - E[x_i]) over the background.
- Pipelines are explained in the user's original features: the graph's own
  preprocessing gives the transformed row and background, and each feature's
  columns are summed (mapping.py).
- Anything else, or a graph whose estimator does not reproduce ONNX Runtime's
  output, falls back to Kernel SHAP on the ONNX model, with a fixed seed.

The explained number is stated (`output_space`): the margin (log-odds) for
models that squash a score into a probability (gradient boosting, logistic
regression), the probability itself for averaged trees (random forests), the
value for regressors. Base and output are the exact model's float64 numbers;
`parameters["onnx_agreement"]` says how far ONNX Runtime's float32 output is.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import shap  # type: ignore[import-untyped,unused-ignore]

from mrm.explain import graph as g
from mrm.explain.estimators import Unsupported, node_classes
from mrm.explain.exact import Exact
from mrm.explain.kernel import SEED, TOLERANCE, kernel_shap
from mrm.explain.outputs import onnx_target
from mrm.explain.types import (
    EXACT_TOLERANCE,
    Baseline,
    Contribution,
    ExplainError,
    Explanation,
    plain,
)
from mrm.kernel.schema import InputSchema

__all__ = ["Baseline", "Contribution", "ExplainError", "Explanation", "ModelExplainer"]
Array = np.ndarray[Any, Any]
KERNEL_BASELINE_ROWS = 10  # Kernel SHAP per background row is costly; the baseline uses these


@dataclass(frozen=True)
class _Shap:
    values: Array  # [rows, features]
    base: float
    outputs: Array  # [rows]
    method: str
    exact: bool
    space: str
    words: str
    parameters: dict[str, Any]
    fallback_reason: str | None


class ModelExplainer:
    """Explains decisions of one archived model version; build it with `from_onnx`."""

    def __init__(
        self,
        graph: g.Graph,
        background: pd.DataFrame,
        background_sha256: str,
        classes: list[Any] | None,
        exact: Exact | None,
        fallback_reason: str | None,
    ) -> None:
        self._graph = graph
        self._schema: InputSchema = graph.schema
        self._background = background
        self._background_sha256 = background_sha256
        self._classes = classes
        self._exact = exact
        self._fallback_reason = fallback_reason

    @classmethod
    def from_onnx(
        cls,
        onnx_bytes: bytes,
        schema_json: str,
        background_csv: bytes,
        *,
        force_method: str | None = None,
    ) -> ModelExplainer:
        if force_method not in (None, "kernel"):
            raise ExplainError(f"force_method {force_method!r} is unknown (want 'kernel')")
        model = g.load_model(onnx_bytes)
        schema = g.parse_schema(schema_json)
        g.check_inputs(model, schema)
        background = g.read_background(background_csv, schema)
        node = g.find_estimator(model)
        graph = g.Graph.build(model, schema, node)
        out = graph.run(graph.feeds(background))
        classes = _classes(node, graph, out)
        exact: Exact | None = None
        reason: str | None = None
        if force_method == "kernel":
            reason = "force_method='kernel' was asked for"
        elif node is None:
            ops = sorted({n.op_type for n in model.graph.node})
            reason = f"no single tree or linear estimator node among the graph's operators {ops}"
        else:
            transformed = graph.transformed
            assert transformed is not None
            P = out[graph.output_names[-1]]
            try:
                exact = Exact.build(
                    node,
                    schema.names,
                    background,
                    out[transformed],
                    P,
                    lambda frame: graph.run(graph.feeds(frame))[transformed],
                    preprocessed=graph.transformed not in graph.input_names,
                )
            except Unsupported as e:
                reason = str(e)
        sha = hashlib.sha256(background_csv).hexdigest()
        return cls(graph, background, sha, classes, exact, reason)

    @property
    def method(self) -> str:
        """The explainer decisions get: the exact one, or "kernel_shap"."""
        return self._exact.method if self._exact is not None else "kernel_shap"

    @property
    def fallback_reason(self) -> str | None:
        return self._fallback_reason

    def rows_from_request(self, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The stored request's inputs as feature rows (feature name -> value), in order."""
        return self._graph.rows(self._graph.request_feeds(inputs))

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Re-run the model on stored request inputs; plain lists shaped like the record's."""
        out = self._graph.run(self._graph.request_feeds(inputs))
        return {name: _plain(out[name]) for name in self._graph.output_names}

    def explain(self, row: Mapping[str, Any], *, class_label: str | None = None) -> Explanation:
        """SHAP values of one decision; `class_label` defaults to the predicted class."""
        frame = g.frame_of([row], self._schema)
        out = self._graph.run(self._graph.feeds(frame))
        predicted = self._predicted(out)
        k = self._class_index(class_label if class_label is not None else predicted)
        result = self._shap(frame, out, k)
        phi = result.values[0]
        output = float(result.outputs[0])
        contributions = tuple(
            Contribution(f.name, plain(row[f.name]), float(phi[i]))
            for i, f in enumerate(self._schema.features)
        )
        return Explanation(
            method=result.method,
            exact=result.exact,
            output_space=result.space,
            output_label=result.words,
            class_label=None if self._classes is None else str(self._classes[k]),
            predicted_label=predicted,
            base_value=result.base,
            output_value=output,
            contributions=contributions,
            additivity_error=abs(result.base + float(phi.sum()) - output),
            tolerance=EXACT_TOLERANCE if result.exact else TOLERANCE,
            parameters=result.parameters,
            fallback_reason=result.fallback_reason,
        )

    def baseline(self, *, class_label: str | None = None) -> Baseline:
        """Expected value and mean |SHAP| per feature over the background.

        The class defaults to the positive one (the second) for a binary
        classifier, and to the class predicted most often over the background
        for more classes.
        """
        out = self._graph.run(self._graph.feeds(self._background))
        if class_label is None and self._classes is not None:
            if len(self._classes) == 2:
                class_label = str(self._classes[1])
            else:
                labels = [str(v) for v in np.asarray(out[self._graph.output_names[0]]).ravel()]
                class_label = Counter(labels).most_common(1)[0][0]
        k = self._class_index(class_label)
        frame = self._background
        if self._exact is None:
            frame = frame.iloc[:KERNEL_BASELINE_ROWS]
            out = self._graph.run(self._graph.feeds(frame))
        result = self._shap(frame, out, k)
        importance = np.abs(result.values).mean(axis=0)
        params = dict(result.parameters)
        params["rows_explained"] = len(frame)
        params.pop("onnx_agreement", None)
        return Baseline(
            method=result.method,
            exact=result.exact,
            output_space=result.space,
            class_label=None if self._classes is None else str(self._classes[k]),
            expected_value=result.base,
            global_importance={
                f.name: float(importance[i]) for i, f in enumerate(self._schema.features)
            },
            parameters=params,
            background_sha256=self._background_sha256,
            shap_version=shap.__version__,
            fallback_reason=result.fallback_reason,
        )

    # -- internals --

    def _shap(self, frame: pd.DataFrame, out: dict[str, Array], k: int) -> _Shap:
        reason = self._fallback_reason
        if self._exact is not None:
            target = self._exact.targets(k)
            try:
                r = self._exact.explain(
                    frame, out[self._graph.transformed or ""], out[self._score_name], target
                )
                params = self._common() | self._exact.parameters()
                params["onnx_agreement"] = r.agreement
                return _Shap(
                    r.shap, r.base, r.outputs, self._exact.method, True, target.space,
                    target.label, params, None,
                )  # fmt: skip
            except Unsupported as e:
                reason = str(e)
        return self._kernel(frame, k, reason)

    def _kernel(self, frame: pd.DataFrame, k: int, reason: str | None) -> _Shap:
        _, space, words = self._target(out=None, frame=self._background, k=k)

        def predict(rows: pd.DataFrame) -> Array:
            return np.asarray(self._target(out=None, frame=rows, k=k)[0])

        r = kernel_shap(self._schema, self._background, frame, predict)
        params = self._common() | {
            "explainer": "shap.KernelExplainer",
            "seed": SEED,
            "nsamples": r.nsamples,
            "link": "identity",
            "l1_reg": False,
            "string_encoding": "codes into a sorted vocabulary, decoded before ONNX Runtime",
            "additivity": "enforced by Kernel SHAP's constrained regression",
        }
        return _Shap(r.shap, r.base, r.outputs, "kernel_shap", False, space, words, params, reason)

    def _target(self, out: dict[str, Array] | None, frame: pd.DataFrame, k: int) -> Any:
        if out is None:
            out = self._graph.run(self._graph.feeds(frame))
        try:
            return onnx_target(self._classes, out[self._score_name], k)
        except Unsupported as e:
            raise ExplainError(f"cannot read the model's output: {e}") from None

    def _common(self) -> dict[str, Any]:
        return {
            "background_rows": len(self._background),
            "background_sha256": self._background_sha256,
            "shap_version": shap.__version__,
        }

    @property
    def _score_name(self) -> str:
        return self._graph.output_names[-1 if self._classes is not None else 0]

    def _predicted(self, out: dict[str, Array]) -> str | None:
        if self._classes is None:
            return None
        return str(plain(np.asarray(out[self._graph.output_names[0]]).ravel()[0]))

    def _class_index(self, label: str | None) -> int:
        if self._classes is None:
            if label is not None:
                raise ExplainError(f"class {label!r} was asked for, but the model is a regressor")
            return 0
        names = [str(c) for c in self._classes]
        if label not in names:
            raise ExplainError(f"class {label!r} is not one of the model's classes {names}")
        return names.index(str(label))


def _classes(node: Any, graph: g.Graph, out: dict[str, Array]) -> list[Any] | None:
    """The class labels in score-column order; None for a regressor."""
    if node is not None:
        try:
            return node_classes(node)
        except Unsupported as e:
            raise ExplainError(f"cannot read the model's classes: {e}") from None
    if len(graph.output_names) < 2:
        return None
    seen = sorted({plain(v) for v in np.asarray(out[graph.output_names[0]]).ravel()})
    columns = np.asarray(out[graph.output_names[-1]]).reshape(len(next(iter(out.values()))), -1)
    if len(seen) != columns.shape[1]:
        raise ExplainError("cannot tell the model's classes from its graph")
    return list(seen)


def _plain(array: Array) -> list[Any]:
    array = np.asarray(array)
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
    return list(array.tolist())
