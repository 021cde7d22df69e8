"""The performance snapshot: scikit-learn's own metrics on the original estimator.

Classifiers (labels in the model's `classes_` order, which is sorted):

    binary:     {"task", "rows", "eval_sha256", "sklearn_version", "classes",
                 "positive_label", "accuracy", "f1", "precision", "recall",
                 "roc_auc", "confusion_matrix": {"labels", "matrix"}}
    multiclass: the same without "positive_label", with f1, precision, recall
                and roc_auc (one-vs-rest) under "average": {"macro": {...},
                "weighted": {...}}

Binary metrics are for the greater label (`pos_label = max(classes)`).
precision, recall and f1 count 0/0 as 0 (zero_division=0) rather than warn.
Multiclass precision, recall and f1 average over all the model's classes.
roc_auc uses predict_proba, else decision_function, and is null when it is
undefined: one class in the data, a multiclass model without probabilities,
or a class of the model with no rows in the data.
confusion_matrix rows are true labels, columns predicted, both in `labels` order.

Regressors: {"task", "rows", "eval_sha256", "sklearn_version", "mae", "rmse", "r2"};
r2 is null with fewer than two rows. Every number is a plain int or float.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sklearn  # type: ignore[import-untyped,unused-ignore]
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]
from sklearn.base import is_classifier  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.errors import DeployError


def _num(value: Any) -> float | None:
    """A JSON-safe float: NaN (undefined metric) becomes None."""
    x = float(value)
    return x if math.isfinite(x) else None


def _label(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _scores(estimator: Any, X: Any) -> np.ndarray[Any, Any] | None:
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(X))
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X))
    return None


def _roc_auc(
    y: Any, scores: np.ndarray[Any, Any] | None, classes: Any, average: str
) -> float | None:
    if scores is None or len(np.unique(y)) < 2:
        return None
    if len(classes) == 2:
        # The last column (or the one score) belongs to classes[1], the greater label.
        return _num(metrics.roc_auc_score(y, scores[:, -1] if scores.ndim == 2 else scores))
    if scores.ndim != 2 or not np.allclose(scores.sum(axis=1), 1.0):
        return None  # one-vs-rest needs probabilities
    if len(np.unique(y)) < len(classes):
        return None  # a class with no rows has no one-vs-rest curve
    return _num(
        metrics.roc_auc_score(y, scores, multi_class="ovr", average=average, labels=classes)
    )


def _classification(estimator: Any, X: Any, y: Any) -> dict[str, Any]:
    classes = estimator.classes_
    unseen = sorted({_label(v) for v in np.unique(y)} - {_label(c) for c in classes}, key=str)
    if unseen:
        raise DeployError(f"the evaluation target has labels the model never saw: {unseen[:10]}")
    pred = estimator.predict(X)
    scores = _scores(estimator, X)
    out: dict[str, Any] = {
        "classes": [_label(c) for c in classes],
        "accuracy": _num(metrics.accuracy_score(y, pred)),
    }
    if len(classes) == 2:
        kw: dict[str, Any] = {"pos_label": classes[-1], "zero_division": 0}
        out["positive_label"] = _label(classes[-1])
        out["f1"] = _num(metrics.f1_score(y, pred, **kw))
        out["precision"] = _num(metrics.precision_score(y, pred, **kw))
        out["recall"] = _num(metrics.recall_score(y, pred, **kw))
        out["roc_auc"] = _roc_auc(y, scores, classes, "macro")
    else:
        out["average"] = {}
        for avg in ("macro", "weighted"):
            kw = {"average": avg, "labels": classes, "zero_division": 0}
            out["average"][avg] = {
                "f1": _num(metrics.f1_score(y, pred, **kw)),
                "precision": _num(metrics.precision_score(y, pred, **kw)),
                "recall": _num(metrics.recall_score(y, pred, **kw)),
                "roc_auc": _roc_auc(y, scores, classes, avg),
            }
    matrix = metrics.confusion_matrix(y, pred, labels=classes)
    out["confusion_matrix"] = {
        "labels": [_label(c) for c in classes],
        "matrix": [[int(v) for v in row] for row in matrix],
    }
    return out


def _regression(estimator: Any, X: Any, y: Any) -> dict[str, Any]:
    pred = estimator.predict(X)
    return {
        "mae": _num(metrics.mean_absolute_error(y, pred)),
        "rmse": _num(metrics.root_mean_squared_error(y, pred)),
        # sklearn warns and returns NaN for one row; say "undefined" without the warning.
        "r2": _num(metrics.r2_score(y, pred)) if len(y) >= 2 else None,
    }


def snapshot(estimator: Any, X: Any, y: Any, *, eval_sha256: str) -> dict[str, Any]:
    """Metrics of `estimator` on (X, y); `eval_sha256` is the evaluation file's hash.

    `X` must be in the form the estimator takes (see schema.sklearn_input).
    """
    if len(y) == 0:
        raise DeployError("no evaluation rows to compute metrics on")
    task = "classification" if is_classifier(estimator) else "regression"
    head = {
        "task": task,
        "rows": len(y),
        "eval_sha256": eval_sha256,
        "sklearn_version": sklearn.__version__,
    }
    body = (
        _classification(estimator, X, y)
        if task == "classification"
        else _regression(estimator, X, y)
    )
    return head | body
