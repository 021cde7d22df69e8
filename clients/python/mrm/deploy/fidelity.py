"""Does the ONNX model predict what the scikit-learn model predicts, row by row?

The check runs onnxruntime the way the proxy serves (CPU, one thread, inputs
in the schema's form) against the original estimator on the evaluation data.
A row passes when:

- classifiers: the label is equal, and every probability is within `atol`
  (absolute: probabilities already live on [0, 1]). A different label is
  excused, and counted in `label_ties`, only where scikit-learn's own
  probabilities for both labels are within `atol` of each other: a forest of
  50 trees voting 25 to 25 has no preferred label, and float32 rounding in
  ONNX picks one (`allow_ties=False` refuses these too);
- classifiers without predict_proba: the label is equal, and every
  decision_function score is within `atol + rtol * |expected|`;
- regressors: the value is within `atol + rtol * |expected|` (numpy.isclose).

Why a relative term for values: ONNX computes in float32, whose rounding error
grows with the magnitude of the numbers (about 6e-8 of it per operation). A
regressor predicting house prices near 3e5 is off by about 1e-2 in float32
however faithful the conversion, while probabilities and small values are held
to `atol` alone. A mismatch is a result, not an exception: the caller records
the report and refuses the deploy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from sklearn import ensemble  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.convert import TREE_ESTIMATORS, Converted, final_estimator
from mrm.deploy.errors import DeployError
from mrm.deploy.schema import components, onnx_inputs, sklearn_input

MAX_REPORTED = 5
_HGB = (ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor)


@dataclass(frozen=True)
class FidelityReport:
    """The outcome of `check_fidelity`, recorded whether it passed or not.

    label_ties: labels that differ where scikit-learn's probabilities tie (not failures).
    max_abs_value_diff: over regressor values, or over the scores of classifiers
    without predict_proba. first_mismatches: up to 5 {"row", "output", "expected",
    "got"} in row order, row being the 0-based evaluation data row. hint: a likely
    cause of a failure, when one is known.
    """

    passed: bool
    rows: int
    label_mismatches: int
    label_ties: int
    max_abs_prob_diff: float | None
    max_abs_value_diff: float | None
    first_mismatches: list[dict[str, Any]]
    atol: float
    rtol: float
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_onnx(converted: Converted, X: Any) -> dict[str, np.ndarray[Any, Any]]:
    """Every output of the converted model on the rows of `X`, by role ("label", "value", ...)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the proxy runs it; also keeps float sums in one order
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # ORT warns on stderr about benign declared-shape differences
    arrays = onnx_inputs(converted.schema, X)
    try:
        session = ort.InferenceSession(
            converted.onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(arrays):
            raise DeployError(
                f"the ONNX model takes {len(names)} inputs, the schema gives {len(arrays)}"
            )
        results = session.run(
            list(converted.outputs.values()), dict(zip(names, arrays, strict=True))
        )
    except DeployError:
        raise
    except Exception as e:  # onnxruntime's errors share no base class besides Exception
        raise DeployError(f"onnxruntime could not run the converted model: {e}") from e
    return {role: np.asarray(r) for role, r in zip(converted.outputs, results, strict=True)}


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _aligned(got: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """ONNX output shaped like scikit-learn's, or DeployError if it cannot be."""
    if got.shape == expected.shape:
        return got
    if expected.ndim == 1 and got.ndim == 2 and got.shape[0] == expected.shape[0]:
        return np.asarray(got[:, -1])  # binary scores: the last column is the positive class's
    raise DeployError(f"the ONNX output has shape {got.shape}, scikit-learn's has {expected.shape}")


def _row_diff(got: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return np.asarray(diff.reshape(len(diff), -1).max(axis=1))


class _Mismatches:
    """Rows that disagree, with details of the first few for the report."""

    def __init__(self) -> None:
        self.rows: set[int] = set()
        self.details: dict[int, list[dict[str, Any]]] = {}

    def add(self, mask: np.ndarray[Any, Any], output: str, exp: Any, got: Any) -> None:
        rows = np.flatnonzero(mask)
        self.rows.update(int(i) for i in rows)
        for i in rows[:MAX_REPORTED]:  # the first MAX_REPORTED overall are among these
            entry = {"row": int(i), "output": output, "expected": _plain(exp[i])}
            self.details.setdefault(int(i), []).append(entry | {"got": _plain(got[i])})

    def first(self) -> list[dict[str, Any]]:
        return [e for i in sorted(self.details) for e in self.details[i]][:MAX_REPORTED]


def _ties(
    wrong: np.ndarray[Any, Any], got_label: Any, proba: Any, classes: list[Any], atol: float
) -> Any:
    """Of the `wrong` rows, those where scikit-learn's own probabilities tie (within atol)
    between its label and ONNX's: float rounding picks the winner there, not the model."""
    index = {c: i for i, c in enumerate(classes)}
    tie = np.zeros_like(wrong)
    for i in np.flatnonzero(wrong):
        j = index.get(_plain(got_label[i]))
        tie[i] = j is not None and proba[i].max() - proba[i, j] <= atol
    return tie


def _hint(estimator: Any, X: Any) -> str | None:
    last = final_estimator(estimator)
    other_trees = isinstance(last, TREE_ESTIMATORS) and not isinstance(last, _HGB)
    if other_trees and pd.DataFrame(X).isna().to_numpy().any():
        return (
            "missing values: skl2onnx drops the NaN routing scikit-learn learned for "
            f"{type(last).__name__} (onnx/sklearn-onnx#1253); impute them in the pipeline "
            "or use HistGradientBoosting"
        )
    if isinstance(last, TREE_ESTIMATORS) and any(
        isinstance(p, StandardScaler) for p in components(estimator)
    ):
        return (
            "trees after a StandardScaler: ONNX scales in float32, scikit-learn in float64, "
            "so values on a split threshold can fall on the other side; trees need no "
            "scaling, so drop the scaler"
        )
    return None


def check_fidelity(
    estimator: Any,
    converted: Converted,
    X: Any,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    allow_ties: bool = True,
) -> FidelityReport:
    """Compare the ONNX model with `estimator` on every row of `X` (see the module doc)."""
    rows = len(X)
    if rows == 0:
        raise DeployError("no evaluation rows to check the ONNX model on")
    got = run_onnx(converted, X)
    Xs = sklearn_input(estimator, converted.schema, X)
    bad = _Mismatches()
    proba = np.asarray(estimator.predict_proba(Xs)) if "probabilities" in got else None
    label_mismatches = label_ties = 0
    prob_diff = value_diff = None
    if converted.task == "classification":
        exp_label = np.asarray(estimator.predict(Xs))
        got_label = _aligned(got["label"].reshape(-1), exp_label)
        wrong = exp_label != got_label
        if allow_ties and proba is not None and wrong.any():
            tie = _ties(wrong, got_label, proba, converted.classes or [], atol)
            label_ties, wrong = int(tie.sum()), wrong & ~tie
        label_mismatches = int(wrong.sum())
        bad.add(wrong, "label", exp_label, got_label)
    if proba is not None:
        out = _aligned(got["probabilities"], proba)
        diff = _row_diff(out, proba)
        prob_diff = float(np.nanmax(diff, initial=0.0))
        bad.add(~(diff <= atol), "probabilities", proba, out)  # written so that NaN fails
    for role in ("scores", "value"):
        if role not in got:
            continue
        fn = estimator.decision_function if role == "scores" else estimator.predict
        exp = np.asarray(fn(Xs))
        raw = got[role]
        out = _aligned(raw.reshape(exp.shape) if raw.size == exp.size else raw, exp)
        close = np.isclose(out.astype(np.float64), exp.astype(np.float64), rtol=rtol, atol=atol)
        value_diff = float(np.nanmax(_row_diff(out, exp), initial=0.0))
        bad.add(~close.reshape(rows, -1).all(axis=1), role, exp, out)
    return FidelityReport(
        passed=not bad.rows,
        rows=rows,
        label_mismatches=label_mismatches,
        label_ties=label_ties,
        max_abs_prob_diff=prob_diff,
        max_abs_value_diff=value_diff,
        first_mismatches=bad.first(),
        atol=atol,
        rtol=rtol,
        hint=_hint(estimator, X) if bad.rows else None,
    )
