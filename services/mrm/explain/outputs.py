"""Which number is explained, and how it relates to what ONNX Runtime returns.

A classifier's graph returns a label and a per-class tensor (probabilities, or
scores for models without predict_proba); a regressor's returns a value. The
exact explainers work on the estimator node's raw scores; `interpret` finds
which of the known ways of turning raw scores into the graph's output holds
(post_transform NONE, LOGISTIC, SOFTMAX; binary models with one score column)
by checking it on the background rows. It is the link between "the trees we
read" and "the model that served the decision": if nothing matches, the exact
path is not used.

Each explained output is affine in one raw column, `offset + sign * raw[:, column]`,
so SHAP values carry over by multiplying with `sign`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrm.explain.estimators import Unsupported

Array = np.ndarray[Any, Any]
AGREEMENT = 1e-4  # ONNX Runtime computes in float32; we recompute its output in float64


@dataclass(frozen=True)
class Target:
    """The explained number for one class: offset + sign * raw[:, column]."""

    column: int
    sign: float
    offset: float
    space: str  # "probability" | "margin" | "value"
    label: str  # plain words


def _sigmoid(x: Array) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _two(p: Array, neg: Callable[[Array], Array]) -> Array:
    return np.column_stack([neg(p[:, 0]), p[:, 0]])


def is_probability(P: Array) -> bool:
    return bool(P.ndim == 2 and P.shape[1] > 1 and np.allclose(P.sum(axis=1), 1.0, atol=1e-4))


def _normalized_sigmoid(R: Array) -> Array:
    s = _sigmoid(R)
    return np.asarray(s / s.sum(axis=1, keepdims=True))


RULES: dict[str, Callable[[Array], Array]] = {
    "value": lambda R: R,
    "identity": lambda R: R,
    "logistic": _sigmoid,
    "logistic_normalized": _normalized_sigmoid,
    "softmax": _softmax,
    "binary_complement": lambda R: _two(R, lambda r: 1.0 - r),
    "binary_negated": lambda R: _two(R, lambda r: -r),
    "binary_logistic": lambda R: _two(_sigmoid(R), lambda r: 1.0 - r),
}
# (post_transform, one score column per class?) -> the rules to try, with the space they explain
_CANDIDATES: dict[tuple[str, bool], list[tuple[str, str]]] = {
    ("NONE", True): [("identity", "")],  # probability or margin, by what P looks like
    ("LOGISTIC", True): [("logistic", "margin"), ("logistic_normalized", "margin")],
    ("SOFTMAX", True): [("softmax", "margin")],
    ("NONE", False): [("binary_complement", "probability"), ("binary_negated", "margin")],
    ("LOGISTIC", False): [("binary_logistic", "margin")],
}


def recompute(rule: str, R: Array) -> Array:
    """The graph's output tensor as `rule` derives it from the raw scores."""
    return RULES[rule](R)


def interpret(
    task: str, post: str, classes: list[Any] | None, R: Array, P: Array
) -> tuple[str, Callable[[int], Target]]:
    """How the graph's output P derives from raw scores R; the rule's name and its targets."""
    P = np.asarray(P, dtype=np.float64).reshape(len(R), -1)
    if task == "regression":
        if post == "NONE" and P.shape[1] == R.shape[1] == 1 and _agree(R, P):
            return "value", lambda _k: Target(0, 1.0, 0.0, "value", "predicted value")
        raise Unsupported("the regressor's output is not its trees' or weights' sum")
    assert classes is not None
    n, cols = len(classes), R.shape[1]
    if cols == n or (cols == 1 and n == 2):
        for name, space in _CANDIDATES.get((post, cols == n), []):
            expected = recompute(name, R)
            if expected.shape == P.shape and _agree(expected, P):
                space = space or ("probability" if is_probability(P) else "margin")
                return name, _targets(name, space, classes, post)
    raise Unsupported(
        f"the {post} post_transform over {cols} score column(s) does not reproduce "
        f"ONNX Runtime's output for {n} classes"
    )


def _agree(a: Array, b: Array) -> bool:
    return bool(np.allclose(a, b, rtol=AGREEMENT, atol=AGREEMENT, equal_nan=True))


def _targets(name: str, space: str, classes: list[Any], post: str) -> Callable[[int], Target]:
    def target(k: int) -> Target:
        words = _words(space, post, name, classes[k])
        if name.startswith("binary"):
            if k == 1:
                return Target(0, 1.0, 0.0, space, words)
            offset = 1.0 if name == "binary_complement" else 0.0
            return Target(0, -1.0, offset, space, words)
        return Target(k, 1.0, 0.0, space, words)

    return target


def _words(space: str, post: str, name: str, label: Any) -> str:
    cls = f'class "{label}"'
    if space == "probability":
        return f"probability of {cls}"
    if post == "LOGISTIC":
        return f"log-odds of {cls}"
    if post == "SOFTMAX":
        return f"log-odds score (before softmax) of {cls}"
    return f"decision score of {cls}"


def onnx_target(classes: list[Any] | None, P: Array, k: int) -> tuple[Array, str, str]:
    """The explained output straight from ONNX Runtime (the model-agnostic path)."""
    P = np.asarray(P, dtype=np.float64).reshape(len(P), -1)
    if classes is None:
        return P[:, 0], "value", "predicted value"
    space = "probability" if is_probability(P) else "margin"
    words = _words(space, "NONE", "", classes[k])
    if P.shape[1] == len(classes):
        return P[:, k], space, words
    if P.shape[1] == 1 and len(classes) == 2:
        if k == 1:
            return P[:, 0], space, words
        return (1.0 - P[:, 0] if space == "probability" else -P[:, 0]), space, words
    raise Unsupported(f"the model returns {P.shape[1]} columns for {len(classes)} classes")
