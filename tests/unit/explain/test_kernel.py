"""The model-agnostic fallback: Kernel SHAP on the ONNX model, seeded and stated."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from sklearn import ensemble  # type: ignore[import-untyped,unused-ignore]

from mrm.explain.engine import ModelExplainer
from mrm.kernel.schema import Feature, InputSchema
from tests.support.explain_models import Deployed, credit_pipeline, deploy


@pytest.fixture(scope="module")
def boosted() -> Deployed:
    model = ensemble.GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)
    return deploy("credit", credit_pipeline(model, scale=False))


def test_forced_kernel_is_seeded_and_additive(boosted: Deployed) -> None:
    state = np.random.get_state()[1].copy()  # type: ignore[index]
    first = boosted.explainer(force_method="kernel")
    assert first.method == "kernel_shap"
    a = first.explain(boosted.row(2), class_label="1")
    b = first.explain(boosted.row(2), class_label="1")
    c = boosted.explainer(force_method="kernel").explain(boosted.row(2), class_label="1")
    assert a == b == c
    assert np.array_equal(np.random.get_state()[1], state)  # type: ignore[index]
    assert a.method == "kernel_shap"
    assert a.exact is False
    assert a.fallback_reason is not None
    assert "kernel" in a.fallback_reason
    assert a.additivity_error <= a.tolerance
    assert a.tolerance == 1e-5
    assert a.output_space == "probability"
    assert a.output_label == 'probability of class "1"'
    assert a.parameters["seed"] == 0
    assert a.parameters["nsamples"] > 0
    assert [x.feature for x in a.contributions] == boosted.converted.schema.names
    p = float(boosted.model.predict_proba(boosted.X.iloc[2:3])[0][1])
    assert a.output_value == pytest.approx(p, abs=1e-6)


def test_kernel_with_all_coalitions_equals_exact_tree_shap() -> None:
    """With 8 features Kernel SHAP enumerates every coalition: it is then exact."""
    d = deploy("regression", ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0))
    exact = d.explainer().explain(d.row(4))
    kernel = d.explainer(force_method="kernel").explain(d.row(4))
    assert (exact.method, kernel.method) == ("tree_shap_interventional", "kernel_shap")
    assert kernel.output_space == exact.output_space == "value"
    got = np.array([c.shap for c in kernel.contributions])
    want = np.array([c.shap for c in exact.contributions])
    assert np.abs(got - want).max() <= 1e-6  # ONNX Runtime's float32 output vs float64 trees
    assert kernel.base_value == pytest.approx(exact.base_value, abs=1e-6)


def test_kernel_baseline_states_its_rows(boosted: Deployed) -> None:
    base = boosted.explainer(force_method="kernel").baseline()
    assert base.method == "kernel_shap"
    assert base.exact is False
    assert base.parameters["rows_explained"] == 10
    assert list(base.global_importance) == boosted.converted.schema.names
    assert base.fallback_reason is not None


def _matmul_model(weights: list[float], bias: float) -> bytes:
    """A linear model written with plain MatMul/Add: no estimator node to read."""
    n = len(weights)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["variable"]),
        ],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [n, 1], weights),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_graph_without_an_estimator_node_falls_back() -> None:
    weights = [0.5, -2.0, 1.25]
    schema = InputSchema(tuple(Feature(f"x{i}", "float", i) for i in range(3)), "tensor")
    rng = np.random.default_rng(1)
    bg = rng.integers(0, 10, (40, 3))
    csv = ("x0,x1,x2\n" + "\n".join(",".join(str(v) for v in r) for r in bg)).encode()
    explainer = ModelExplainer.from_onnx(_matmul_model(weights, 3.0), schema.to_json(), csv)
    assert explainer.method == "kernel_shap"
    assert explainer.fallback_reason is not None
    assert "no single tree or linear estimator node" in explainer.fallback_reason
    row = {"x0": 1.0, "x1": 7.0, "x2": 2.0}
    e = explainer.explain(row)
    assert e.output_space == "value"
    assert e.class_label is None
    assert e.fallback_reason == explainer.fallback_reason
    want = np.array(weights) * (np.array(list(row.values())) - bg.mean(axis=0))
    assert np.abs(np.array([c.shap for c in e.contributions]) - want).max() <= 1e-5
    assert e.additivity_error <= e.tolerance
