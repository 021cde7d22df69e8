"""The final estimator read out of the ONNX graph: trees or linear weights.

`read_estimator` turns an ai.onnx.ml TreeEnsembleClassifier/Regressor or
LinearClassifier/Regressor node into an `Estimator`: its raw scores (one column
per class or target, before the node's post_transform) as a float64 function
of the transformed input, and what the node does with them afterwards. The
engine checks `raw` against ONNX Runtime before it trusts any of it.

Tree semantics follow the ONNX operator spec: BRANCH_LEQ sends x <= t to the
true branch, BRANCH_LT x < t, and so on; ONNX Runtime compares in float32 for
a float input, so thresholds stay float32 and x < t becomes
x <= nextafter(t, -inf). A missing value (NaN) fails every comparison and
takes the false branch unless nodes_missing_value_tracks_true says otherwise.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Array = np.ndarray[Any, Any]


class Unsupported(Exception):
    """The node uses something the exact explainers do not read (the engine falls back)."""


@dataclass
class Tree:
    children_left: Array
    children_right: Array
    children_default: Array
    features: Array
    thresholds: Array
    values: Array  # [nodes, columns]; leaves hold the weights, inner nodes zeros

    def as_shap(self) -> dict[str, Array]:
        """shap's dict tree; shap counts the node weights itself from the background."""
        return {
            "children_left": self.children_left,
            "children_right": self.children_right,
            "children_default": self.children_default,
            "features": self.features,
            "thresholds": self.thresholds,
            "values": self.values,
            "node_sample_weight": np.zeros(len(self.features), dtype=np.float64),
        }

    def leaves(self, X: Array) -> Array:
        """The leaf each row of X reaches."""
        if len(X) <= 4:  # a decision or two: plain descent beats numpy's per-call cost
            return np.array([self._leaf(x) for x in X.tolist()], dtype=np.int64)
        node = np.zeros(len(X), dtype=np.int64)
        rows = np.arange(len(X))
        while True:
            inner = self.children_left[node] >= 0
            if not inner.any():
                return node
            f = self.features[node]
            x = X[rows, np.maximum(f, 0)]
            go_left = np.where(np.isnan(x), -1, x <= self.thresholds[node])
            nxt = np.where(
                go_left == -1,
                self.children_default[node],
                np.where(go_left == 1, self.children_left[node], self.children_right[node]),
            )
            node = np.where(inner, nxt, node)

    def _leaf(self, x: list[float]) -> int:
        left, right, default = self._lists
        features, thresholds = self._split
        node = 0
        while left[node] >= 0:
            v = x[features[node]]
            if v != v:  # NaN takes the default branch
                node = default[node]
            elif v <= thresholds[node]:
                node = left[node]
            else:
                node = right[node]
        return node

    @functools.cached_property
    def _lists(self) -> tuple[list[int], list[int], list[int]]:
        return (
            self.children_left.tolist(),
            self.children_right.tolist(),
            self.children_default.tolist(),
        )

    @functools.cached_property
    def _split(self) -> tuple[list[int], list[float]]:
        return self.features.tolist(), self.thresholds.tolist()


@dataclass
class Estimator:
    kind: str  # "tree" | "linear"
    task: str  # "classification" | "regression"
    post_transform: str  # NONE, LOGISTIC, SOFTMAX, ...
    columns: int  # raw score columns
    classes: list[Any] | None
    base: Array  # [columns], added to every row's raw score
    trees: list[Tree] = field(default_factory=list)
    coefficients: Array | None = None  # [columns, features] for linear

    def raw(self, X: Array) -> Array:
        """The node's scores before post_transform, in float64: [rows, columns]."""
        out = np.tile(self.base, (len(X), 1)).astype(np.float64)
        if self.kind == "linear":
            assert self.coefficients is not None
            return out + X.astype(np.float64) @ self.coefficients.T
        for tree in self.trees:
            out += tree.values[tree.leaves(X)]
        return out


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        out[a.name] = value
    return out


def _classes(a: dict[str, Any]) -> list[Any]:
    labels = (
        a.get("classlabels_int64s") or a.get("classlabels_ints") or a.get("classlabels_strings")
    )
    if not labels:
        raise Unsupported("the classifier node names no class labels")
    return list(labels)


def node_classes(node: onnx.NodeProto) -> list[Any] | None:
    """A classifier node's labels in score-column order; None for a regressor."""
    if not node.op_type.endswith("Classifier"):
        return None
    return _classes(_attrs(node))


def read_estimator(node: onnx.NodeProto, n_inputs: int, dtype: Any) -> Estimator:
    a = _attrs(node)
    post = str(a.get("post_transform", "NONE"))
    if node.op_type.startswith("Linear"):
        return _linear(node.op_type, a, post, n_inputs)
    return _trees(node.op_type, a, post, dtype)


def _linear(op: str, a: dict[str, Any], post: str, n_inputs: int) -> Estimator:
    coef = np.asarray(a.get("coefficients", []), dtype=np.float64)
    intercepts = np.asarray(a.get("intercepts", []), dtype=np.float64)
    if op == "LinearRegressor":
        rows = int(a.get("targets", 1))
        classes = None
    else:
        classes = _classes(a)
        rows = coef.size // n_inputs if n_inputs else 0
    if rows < 1 or coef.size != rows * n_inputs:
        raise Unsupported(f"{op} has {coef.size} coefficients for {n_inputs} inputs")
    if intercepts.size == 0:
        intercepts = np.zeros(rows)
    if intercepts.size != rows:
        raise Unsupported(f"{op} has {intercepts.size} intercepts for {rows} score columns")
    task = "regression" if classes is None else "classification"
    return Estimator(
        "linear", task, post, rows, classes, intercepts, coefficients=coef.reshape(rows, n_inputs)
    )


def _trees(op: str, a: dict[str, Any], post: str, dtype: Any) -> Estimator:
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    classes = _classes(a) if prefix == "class" else None
    if str(a.get("aggregate_function", "SUM")) not in {"SUM", "AVERAGE"}:
        raise Unsupported(f"aggregate_function {a['aggregate_function']} is not read")
    thresholds = a.get("nodes_values_as_tensor")
    if thresholds is None:
        thresholds = a.get("nodes_values", [])
    thresholds = np.asarray(thresholds, dtype=dtype)
    tree_ids = list(a.get("nodes_treeids", []))
    node_ids = list(a.get("nodes_nodeids", []))
    modes = list(a.get("nodes_modes", []))
    n = len(tree_ids)
    tracks = list(a.get("nodes_missing_value_tracks_true") or [0] * n)
    lengths = {len(node_ids), len(modes), len(tracks), len(thresholds)}
    lengths |= {len(a.get(k, [])) for k in ("nodes_featureids", "nodes_truenodeids")}
    if lengths != {n} or n == 0:
        raise Unsupported("the tree node attributes differ in length")
    weights = a.get(f"{prefix}_weights_as_tensor")
    if weights is None:
        weights = a.get(f"{prefix}_weights", [])
    weights = np.asarray(weights, dtype=np.float64)
    w_tree, w_node, w_col = (
        list(a.get(f"{prefix}_{k}", [])) for k in ("treeids", "nodeids", "ids")
    )
    columns = int(a.get("n_targets", 1)) if classes is None else max(w_col, default=0) + 1
    base = a.get("base_values_as_tensor")
    if base is None:
        base = a.get("base_values") or [0.0] * columns
    base = np.asarray(base, dtype=np.float64)
    if base.size != columns:
        raise Unsupported(f"{base.size} base values for {columns} score columns")

    local: dict[tuple[int, int], int] = {}
    per_tree: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(tree_ids):
        per_tree[t].append(i)
    trees: list[Tree] = []
    order = sorted(per_tree)
    for t in order:
        idx = sorted(per_tree[t], key=lambda i: node_ids[i])
        for pos, i in enumerate(idx):
            local[(t, node_ids[i])] = pos
        trees.append(_tree(a, idx, t, local, modes, tracks, thresholds, columns))
    scale = 1.0 / len(trees) if str(a.get("aggregate_function", "SUM")) == "AVERAGE" else 1.0
    tree_pos = {t: k for k, t in enumerate(order)}
    for t, nid, col, w in zip(w_tree, w_node, w_col, weights, strict=True):
        if (t, nid) not in local or not 0 <= col < columns:
            raise Unsupported(f"a leaf weight points at node {nid} of tree {t}, which is absent")
        trees[tree_pos[t]].values[local[(t, nid)], col] += w * scale
    task = "regression" if classes is None else "classification"
    return Estimator("tree", task, post, columns, classes, base, trees=trees)


def _tree(
    a: dict[str, Any],
    idx: list[int],
    t: int,
    local: dict[tuple[int, int], int],
    modes: list[str],
    tracks: list[int],
    thresholds: Array,
    columns: int,
) -> Tree:
    k = len(idx)
    left = -np.ones(k, dtype=np.int32)
    right = -np.ones(k, dtype=np.int32)
    default = -np.ones(k, dtype=np.int32)
    features = -np.ones(k, dtype=np.int32)
    thr = np.zeros(k, dtype=np.float64)
    down = np.asarray(-np.inf, dtype=thresholds.dtype)
    children: set[int] = set()
    for pos, i in enumerate(idx):
        mode = modes[i]
        if mode == "LEAF":
            continue
        true = local.get((t, a["nodes_truenodeids"][i]))
        false = local.get((t, a["nodes_falsenodeids"][i]))
        if true is None or false is None:
            raise Unsupported(f"tree {t} has a branch to a node that does not exist")
        value = thresholds[i]
        if mode == "BRANCH_LEQ":
            left[pos], right[pos], thr[pos] = true, false, value
        elif mode == "BRANCH_LT":
            left[pos], right[pos], thr[pos] = true, false, np.nextafter(value, down)
        elif mode == "BRANCH_GTE":
            left[pos], right[pos], thr[pos] = false, true, np.nextafter(value, down)
        elif mode == "BRANCH_GT":
            left[pos], right[pos], thr[pos] = false, true, value
        else:
            raise Unsupported(f"tree node mode {mode} is not read")
        default[pos] = true if tracks[i] else false
        features[pos] = int(a["nodes_featureids"][i])
        children |= {true, false}
    if 0 in children:
        raise Unsupported(f"tree {t} does not start at its smallest node id")
    values = np.zeros((k, columns), dtype=np.float64)
    return Tree(left, right, default, features, thr, values)
