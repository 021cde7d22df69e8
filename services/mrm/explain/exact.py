"""The exact explainers: interventional TreeSHAP and linear SHAP, from the ONNX graph.

Both work in the transformed space the estimator node sees, against the same
background pushed through the same graph, and the values of each original
feature's columns are summed (see mapping.py). For a linear model that sum is
exactly the SHAP value of the original feature; for trees over one-hot groups
it is the usual group sum, and additivity holds either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import shap  # type: ignore[import-untyped,unused-ignore]

from mrm.explain.estimators import Estimator, Unsupported, read_estimator
from mrm.explain.mapping import Transform, column_owners, resolve_row
from mrm.explain.outputs import AGREEMENT, Target, interpret, recompute

Array = np.ndarray[Any, Any]
METHODS = {"tree": "tree_shap_interventional", "linear": "linear_shap"}


@dataclass(frozen=True)
class ExactResult:
    shap: Array  # [rows, features], in the target's space
    base: float
    outputs: Array  # [rows]
    agreement: float  # max |recomputed - ONNX Runtime| over the rows' output tensor


@dataclass
class Exact:
    estimator: Estimator
    op: str
    rule: str
    targets: Any  # Callable[[int], Target]
    names: list[str]
    background: pd.DataFrame
    Z: Array  # the background, transformed, float64
    R: Array  # raw scores of the background
    owners: list[int | None]
    preprocessed: bool
    transform: Transform
    _tree: Any = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        node: onnx.NodeProto,
        names: list[str],
        background: pd.DataFrame,
        Z: Array,
        P: Array | None,
        transform: Transform,
        preprocessed: bool,
    ) -> Exact:
        if Z.ndim != 2:
            raise Unsupported(f"the estimator's input has {Z.ndim} dimensions, not 2")
        estimator = read_estimator(node, Z.shape[1], Z.dtype)
        Zf = Z.astype(np.float64)
        R = estimator.raw(Zf)
        if P is None:
            raise Unsupported("the graph returns no score output to check the estimator against")
        rule, targets = interpret(estimator.task, estimator.post_transform, estimator.classes, R, P)
        if preprocessed:
            owners = column_owners(names, background, Zf, transform)
        else:
            owners = list(range(len(names)))
        return cls(
            estimator, node.op_type, rule, targets, names, background, Zf, R, owners,
            preprocessed, transform,
        )  # fmt: skip

    @property
    def method(self) -> str:
        return METHODS[self.estimator.kind]

    def parameters(self) -> dict[str, Any]:
        grouping = (
            "each feature's SHAP value is the sum over its transformed columns "
            "(one-hot groups summed)"
            if self.preprocessed
            else "none: the estimator reads the features directly"
        )
        params: dict[str, Any] = {
            "onnx_estimator": self.op,
            "post_transform": self.estimator.post_transform,
            "output_rule": self.rule,
            "transformed_columns": int(self.Z.shape[1]),
            "grouping": grouping,
            "feature_perturbation": "interventional",
            "onnx_agreement_tolerance": AGREEMENT,
        }
        if self.estimator.kind == "tree":
            params["trees"] = len(self.estimator.trees)
        return params

    def explain(self, frame: pd.DataFrame, z: Array, P: Array, target: Target) -> ExactResult:
        """SHAP values for the rows of `frame`, transformed to `z`, ONNX output `P`."""
        zf = z.astype(np.float64)
        R = self.estimator.raw(zf)
        agreement = _agreement(self.rule, R, P)
        if not agreement <= AGREEMENT * max(1.0, float(np.max(np.abs(R)))):
            raise Unsupported(
                f"the {self.op} read from the graph gives {agreement:.3g} away from "
                "ONNX Runtime's output for this row"
            )
        cols = self._column_shap(zf, target.column) * target.sign
        phi = np.zeros((len(zf), len(self.names)))
        for i in range(len(zf)):
            owners = self.owners
            if self.preprocessed:
                owners = resolve_row(
                    self.names, owners, frame.iloc[i : i + 1], self.background, zf[i], self.Z,
                    self.transform,
                )  # fmt: skip
            for c, owner in enumerate(owners):
                if owner is not None:
                    phi[i, owner] += cols[i, c]
                elif cols[i, c] != 0.0:
                    raise Unsupported(f"transformed column {c} has SHAP value but no feature")
        base = target.offset + target.sign * float(self.R[:, target.column].mean())
        outputs = target.offset + target.sign * R[:, target.column]
        return ExactResult(phi, base, outputs, agreement)

    def _column_shap(self, z: Array, column: int) -> Array:
        """SHAP values per transformed column for one raw score column."""
        if self.estimator.kind == "linear":
            assert self.estimator.coefficients is not None
            w = self.estimator.coefficients[column]
            return np.asarray(w * (z - self.Z.mean(axis=0)))
        values = np.asarray(self._tree_explainer().shap_values(z, check_additivity=False))
        values = values.reshape(len(z), z.shape[1], -1)
        return np.asarray(values[:, :, column])

    def _tree_explainer(self) -> Any:
        if self._tree is None:
            model = {
                "trees": [t.as_shap() for t in self.estimator.trees],
                "base_offset": 0.0,
                "tree_output": "raw_value",
                "input_dtype": np.float64,
                "internal_dtype": np.float64,
            }
            self._tree = shap.TreeExplainer(
                model, data=self.Z, feature_perturbation="interventional", model_output="raw"
            )
        return self._tree


def _agreement(rule: str, R: Array, P: Array) -> float:
    """Largest gap between ONNX Runtime's output and its recomputation (already checked)."""
    gap = recompute(rule, R) - np.asarray(P, dtype=np.float64).reshape(len(R), -1)
    return float(np.max(np.abs(gap)))
