"""Input schema inference and ONNX conversion for every supported estimator.

CASES is shared with test_deploy_fidelity: each case is a realistic dataset
(scikit-learn's bundled ones, or a mixed-type applicants table) split into a
training part and a held-out evaluation part, and an unfitted estimator.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from onnx import TensorProto, helper
from sklearn import ensemble, linear_model, svm, tree  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import (  # type: ignore[import-untyped,unused-ignore]
    load_wine,
)
from sklearn.pipeline import Pipeline, make_pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
    MinMaxScaler,
    StandardScaler,
)
from sklearn.semi_supervised import LabelSpreading  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.convert import SUPPORTED_ESTIMATORS, check_onnx_bytes, convert, final_estimator
from mrm.deploy.errors import DeployError
from mrm.deploy.schema import infer_schema, onnx_inputs
from mrm.kernel.schema import Feature, InputSchema
from tests.support.convert_cases import (
    CASES,
    MIXED,
    classifiers,
    dataset,
    fitted,
    mixed,
)

# --- the input schema -------------------------------------------------------------------


def test_schema_of_a_numeric_frame_is_one_tensor_in_the_model_order() -> None:
    X_train, X_eval, y_train, _ = dataset("wine")
    model = tree.DecisionTreeClassifier(max_depth=2).fit(X_train, y_train)
    schema = infer_schema(model, X_eval[X_eval.columns[::-1]])  # column order does not matter
    assert schema.mode == "tensor"
    assert schema.names == list(X_train.columns)
    assert {f.dtype for f in schema.features} == {"float"}


def test_schema_of_an_array_names_features_x0_to_xn() -> None:
    X = np.arange(12.0).reshape(4, 3)
    model = linear_model.LinearRegression().fit(X, [1.0, 2.0, 3.0, 5.0])
    schema = infer_schema(model, X)
    assert schema == InputSchema(tuple(Feature(f"x{i}", "float", i) for i in range(3)), "tensor")


def test_schema_of_mixed_columns_has_one_input_per_column() -> None:
    X_train = dataset("applicants")[0]
    schema = infer_schema(fitted("applicants", MIXED[0][2]), X_train)
    assert schema.mode == "columns"
    assert [(f.name, f.dtype) for f in schema.features] == [
        ("age", "int"),
        ("income", "float"),
        ("city", "string"),
        ("grade", "int"),
    ]


def test_schema_json_is_canonical_and_round_trips() -> None:
    schema = InputSchema((Feature("age", "int", 0), Feature("city name", "string", 1)), "columns")
    text = schema.to_json()
    assert text == (
        '{"features":[{"dtype":"int","name":"age","position":0},'
        '{"dtype":"string","name":"city name","position":1}],'
        '"format":"mrm.input-schema.v1","mode":"columns"}'
    )
    assert InputSchema.from_json(text) == schema
    assert InputSchema.from_json(text.encode()) == schema


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[]", "not valid JSON"),
        ('{"format":"other","mode":"tensor","features":[]}', "format"),
        ('{"format":"mrm.input-schema.v1","mode":"tensor","features":{}}', "list of objects"),
        ('{"format":"mrm.input-schema.v1","mode":"tensor","features":[{"name":"a"}]}', "malformed"),
        (
            '{"format":"mrm.input-schema.v1","mode":"tensor","features":'
            '[{"name":"a","dtype":"float","position":1}]}',
            "positions",
        ),
        (
            '{"format":"mrm.input-schema.v1","mode":"tensor","features":'
            '[{"name":"a","dtype":"complex","position":0}]}',
            "dtype",
        ),
        (
            '{"format":"mrm.input-schema.v1","mode":"grid","features":'
            '[{"name":"a","dtype":"float","position":0}]}',
            "mode",
        ),
    ],
)
def test_schema_from_json_refuses_malformed_documents(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        InputSchema.from_json(text)


def test_schema_refuses_repeated_names() -> None:
    with pytest.raises(ValueError, match="repeat"):
        InputSchema((Feature("a", "float", 0), Feature("a", "float", 1)), "tensor")


def test_schema_names_extra_and_missing_columns() -> None:
    X_train, _, y_train, _ = dataset("wine")
    model = tree.DecisionTreeClassifier(max_depth=2).fit(X_train, y_train)
    X = X_train.drop(columns=["alcohol"]).assign(colour=1.0)
    with pytest.raises(DeployError, match=r"extra \['colour'\], missing \['alcohol'\]"):
        infer_schema(model, X)


def test_schema_refuses_the_wrong_feature_count_and_unservable_dtypes() -> None:
    model = linear_model.LinearRegression().fit(np.ones((3, 2)), [1.0, 2.0, 3.0])
    with pytest.raises(DeployError, match="3 features, the model takes 2"):
        infer_schema(model, np.ones((3, 3)))
    when = pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    with pytest.raises(DeployError, match="feature 't' has dtype datetime64"):
        infer_schema(linear_model.LinearRegression(), when)


# --- conversion ------------------------------------------------------------------------


def test_every_supported_estimator_has_a_case() -> None:
    covered = {type(final_estimator(p.values[1]())) for p in CASES}
    assert covered == set(SUPPORTED_ESTIMATORS)


@pytest.mark.parametrize(("data", "factory"), CASES)
def test_convert_supported_estimator(data: str, factory: Callable[[], Any]) -> None:
    model = fitted(data, factory)
    X_eval = dataset(data)[1]
    converted = convert(model, infer_schema(model, X_eval))
    check_onnx_bytes(converted.onnx_bytes)
    assert converted.sha256 == hashlib.sha256(converted.onnx_bytes).hexdigest()
    assert converted.task == SUPPORTED_ESTIMATORS[type(final_estimator(model))]
    if converted.task == "classification":
        assert converted.classes == list(model.classes_)
        second = "probabilities" if hasattr(model, "predict_proba") else "scores"
        assert set(converted.outputs) == {"label", second}
    else:
        assert converted.classes is None
        assert set(converted.outputs) == {"value"}
    assert list(converted.inputs) == converted.schema.names


def test_conversion_of_equal_models_gives_equal_bytes() -> None:
    model = fitted("wine", classifiers()[-1][1])
    schema = infer_schema(model, dataset("wine")[1])
    a, b = (convert(pickle.loads(pickle.dumps(model)), schema) for _ in range(2))
    assert a.sha256 == b.sha256


def test_columns_mode_maps_features_to_onnx_input_names() -> None:
    X_train, _, y_train, _ = dataset("applicants")
    X = X_train.rename(columns={"city": "home city"})
    model = mixed(linear_model.LogisticRegression(), scale=True, city="home city").fit(X, y_train)
    converted = convert(model, infer_schema(model, X))
    assert converted.inputs["home city"] == "home_city"  # skl2onnx's spelling; bind by position
    assert converted.classes == [0, 1]


class _Custom(linear_model.LogisticRegression):  # type: ignore[misc]
    """A subclass may predict differently from its parent, so it is not trusted."""


@pytest.mark.parametrize(
    ("estimator", "named"),
    [
        (LabelSpreading(), "sklearn.semi_supervised._label_propagation.LabelSpreading"),
        (_Custom(), "_Custom"),
        (make_pipeline(MinMaxScaler(), linear_model.LogisticRegression()), "MinMaxScaler"),
        (svm.LinearSVC(), "LinearSVC"),
    ],
)
def test_unsupported_estimators_are_named_with_the_supported_list(
    estimator: Any, named: str
) -> None:
    X, y = load_wine(return_X_y=True)
    estimator.fit(X[:, :3], y)
    schema = InputSchema(tuple(Feature(f"x{i}", "float", i) for i in range(3)), "tensor")
    with pytest.raises(DeployError, match="cannot deploy") as caught:
        convert(estimator, schema)
    assert named in str(caught.value)
    assert "supported are LogisticRegression, SGDClassifier" in str(caught.value)
    assert "OneHotEncoder" in str(caught.value)


def test_unfitted_and_natively_categorical_models_are_refused() -> None:
    schema = InputSchema((Feature("x0", "float", 0),), "tensor")
    with pytest.raises(DeployError, match="not fitted"):
        convert(linear_model.LogisticRegression(), schema)
    X = pd.DataFrame({"c": pd.Categorical(["a", "b", "a", "b"] * 10)})
    model = ensemble.HistGradientBoostingClassifier(max_iter=2).fit(X, [0, 1, 0, 1] * 10)
    with pytest.raises(DeployError, match="native categorical"):
        convert(model, infer_schema(model, X))


# --- the checks the proxy will make too ---------------------------------------------------


def _tiny_model(node: onnx.NodeProto, opsets: list[tuple[str, int]]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_check_onnx_bytes_accepts_standard_operators() -> None:
    model = _tiny_model(helper.make_node("Relu", ["x"], ["y"]), [("", 17)])
    check_onnx_bytes(model.SerializeToString())


def test_check_onnx_bytes_refuses_garbage_custom_domains_and_external_data() -> None:
    with pytest.raises(DeployError, match="invalid"):
        check_onnx_bytes(b"not a model")
    custom = _tiny_model(
        helper.make_node("Magic", ["x"], ["y"], domain="com.example"),
        [("", 17), ("com.example", 1)],
    )
    with pytest.raises(DeployError, match=r"domains \['com.example'\]"):
        check_onnx_bytes(custom.SerializeToString())
    external = _tiny_model(helper.make_node("Add", ["x", "w"], ["y"]), [("", 17)])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="weights.bin")
    external.graph.initializer.append(weight)
    with pytest.raises(DeployError, match="external"):
        check_onnx_bytes(external.SerializeToString())


def test_a_column_transformer_fitted_on_an_array_takes_one_tensor() -> None:
    X, y = load_wine(return_X_y=True)
    columns = ColumnTransformer([("num", StandardScaler(), [0, 1, 2])], remainder="passthrough")
    model = Pipeline([("columns", columns), ("model", tree.DecisionTreeClassifier(max_depth=3))])
    schema = infer_schema(model.fit(X, y), X)
    assert schema.mode == "tensor"
    assert convert(model, schema).inputs["x0"] == "input"


def test_a_missing_string_cannot_be_fed_to_onnx() -> None:
    schema = InputSchema((Feature("city", "string", 0),), "columns")
    with pytest.raises(DeployError, match="'city' \\(string\\) has missing values"):
        onnx_inputs(schema, pd.DataFrame({"city": ["Lyon", None]}))
