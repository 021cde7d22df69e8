"""Convert a fitted scikit-learn model to ONNX with skl2onnx, and check the bytes.

Only the estimators and transformers listed here are accepted, because those
are the ones the tests convert and check for fidelity. skl2onnx converts more,
but "it converted" is not "it predicts the same"; extending the lists means
adding a line here and a case to tests/unit/deploy/test_deploy_convert.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import onnx
from skl2onnx import convert_sklearn, get_model_alias  # type: ignore[import-untyped,unused-ignore]
from skl2onnx.common._registration import (  # type: ignore[import-untyped,unused-ignore]
    get_converter,
)
from skl2onnx.common.data_types import (  # type: ignore[import-untyped,unused-ignore]
    BooleanTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn import ensemble, linear_model, svm, tree  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped,unused-ignore]

from mrm.client.onnx_check import UnsafeOnnx, load_checked_onnx
from mrm.deploy.errors import DeployError
from mrm.deploy.schema import components
from mrm.kernel.schema import InputSchema

Task = Literal["classification", "regression"]

# The one list of what `mrmctl deploy` accepts (error messages quote it).
SUPPORTED_ESTIMATORS: dict[type, Task] = {
    linear_model.LogisticRegression: "classification",
    linear_model.SGDClassifier: "classification",
    linear_model.RidgeClassifier: "classification",
    tree.DecisionTreeClassifier: "classification",
    ensemble.RandomForestClassifier: "classification",
    ensemble.ExtraTreesClassifier: "classification",
    ensemble.GradientBoostingClassifier: "classification",
    ensemble.HistGradientBoostingClassifier: "classification",
    linear_model.LinearRegression: "regression",
    linear_model.Ridge: "regression",
    linear_model.Lasso: "regression",
    linear_model.ElasticNet: "regression",
    linear_model.SGDRegressor: "regression",
    svm.LinearSVR: "regression",
    tree.DecisionTreeRegressor: "regression",
    ensemble.RandomForestRegressor: "regression",
    ensemble.ExtraTreesRegressor: "regression",
    ensemble.GradientBoostingRegressor: "regression",
    ensemble.HistGradientBoostingRegressor: "regression",
}
# Not LinearSVC: skl2onnx 1.20 converts it alone but fails inside any Pipeline
# (it has no zipmap option, and the pipeline parser asks for one).
SUPPORTED_TRANSFORMERS: tuple[type, ...] = (
    Pipeline,
    ColumnTransformer,
    StandardScaler,
    OneHotEncoder,
)
TREE_ESTIMATORS: tuple[type, ...] = (
    tree.DecisionTreeClassifier,
    tree.DecisionTreeRegressor,
    ensemble.RandomForestClassifier,
    ensemble.RandomForestRegressor,
    ensemble.ExtraTreesClassifier,
    ensemble.ExtraTreesRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.GradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
)
_TENSOR_TYPES = {
    "float": FloatTensorType,
    "int": Int64TensorType,
    "string": StringTensorType,
    "bool": BooleanTensorType,
}


@dataclass(frozen=True)
class Converted:
    """An ONNX model and what its inputs and outputs mean.

    `outputs` maps a role to the ONNX output name: "label" and either
    "probabilities" (the model has predict_proba) or "scores" (decision_function
    values) for classifiers; "value" for regressors. `inputs` maps each feature
    to its ONNX input name (columns mode) or to the one tensor (tensor mode).
    """

    onnx_bytes: bytes
    sha256: str
    task: Task
    classes: list[Any] | None
    outputs: dict[str, str]
    inputs: dict[str, str]
    schema: InputSchema


def supported_list() -> str:
    names = [t.__name__ for t in SUPPORTED_ESTIMATORS]
    names += [t.__name__ for t in SUPPORTED_TRANSFORMERS]
    return ", ".join(names)


def final_estimator(estimator: Any) -> Any:
    """The predicting step: the estimator itself, or a Pipeline's last step."""
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _is_passthrough(step: Any) -> bool:
    # "drop"/"passthrough"/None as given; a fitted ColumnTransformer turns
    # "passthrough" into an identity FunctionTransformer.
    if step is None or isinstance(step, str):
        return True
    return type(step) is FunctionTransformer and step.func is None and step.inverse_func is None


def _check_supported(estimator: Any) -> Task:
    last = final_estimator(estimator)
    task = SUPPORTED_ESTIMATORS.get(type(last))  # exact type: a subclass may predict differently
    parts = [c for c in components(estimator) if c is not last and not _is_passthrough(c)]
    unsupported = [c for c in parts if type(c) not in SUPPORTED_TRANSFORMERS]
    if task is None or unsupported:
        bad = type(last) if task is None else type(unsupported[0])
        raise DeployError(
            f"cannot deploy a {bad.__module__}.{bad.__qualname__}: supported are {supported_list()}"
        )
    try:
        check_is_fitted(estimator)
    except NotFittedError as e:
        raise DeployError(
            f"the {type(last).__name__} is not fitted; fit it before deploying"
        ) from e
    categorical = getattr(last, "is_categorical_", None)  # HistGradientBoosting only
    if categorical is not None and categorical.any():
        raise DeployError(
            f"{type(last).__name__} uses native categorical features, which skl2onnx cannot "
            "convert; one-hot encode them in the pipeline instead"
        )
    return task


class _IntMissingFlags:
    """A container proxy that passes HistGradientBoosting's missing-value flags as ints.

    skl2onnx 1.20 lists them as a mix of numpy uint8 and Python bool, which
    protobuf 7 refuses in an ints attribute ("Expected an int, got a boolean"),
    so every HistGradientBoosting conversion fails without this.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        flags = attrs.get("nodes_missing_value_tracks_true")
        if flags is not None:
            attrs["nodes_missing_value_tracks_true"] = [int(f) for f in flags]
        return self._container.add_node(*args, **attrs)


def _hgb_converter(model_type: type) -> Any:
    stock = get_converter(get_model_alias(model_type))

    def convert_hgb(scope: Any, operator: Any, container: Any) -> None:
        stock(scope, operator, _IntMissingFlags(container))

    return convert_hgb


def check_onnx_bytes(data: bytes) -> onnx.ModelProto:
    """Load and validate ONNX bytes exactly as the proxy will, or raise DeployError."""
    try:
        return load_checked_onnx(data)
    except UnsafeOnnx as e:
        raise DeployError(str(e)) from None


def convert(estimator: Any, schema: InputSchema, *, target_opset: int | None = None) -> Converted:
    """Convert a fitted, supported estimator whose input `schema` describes the data."""
    task = _check_supported(estimator)
    last = final_estimator(estimator)
    if schema.mode == "tensor":
        initial_types = [("input", FloatTensorType([None, len(schema.features)]))]
    else:
        initial_types = [(f.name, _TENSOR_TYPES[f.dtype]([None, 1])) for f in schema.features]
    options = None
    if task == "classification":
        options = {id(last): {"zipmap": False}}  # probabilities as a plain [N, classes] tensor
    hgb = (ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor)
    try:
        model = convert_sklearn(
            estimator,
            name="mrm",  # skl2onnx names the graph with a random uuid otherwise: bytes would vary
            initial_types=initial_types,
            options=options,
            target_opset=target_opset,
            custom_conversion_functions={t: _hgb_converter(t) for t in hgb},
        )
    except Exception as e:  # skl2onnx raises RuntimeError, ValueError, TypeError, NameError...
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"skl2onnx could not convert the {type(last).__name__}: {line}") from e
    data = model.SerializeToString()
    check_onnx_bytes(data)
    in_names = [i.name for i in model.graph.input]
    out_names = [o.name for o in model.graph.output]
    if schema.mode == "tensor":
        inputs = dict.fromkeys(schema.names, in_names[0])
    elif len(in_names) == len(schema.features):
        inputs = dict(zip(schema.names, in_names, strict=True))
    else:
        raise DeployError(
            f"the ONNX model has {len(in_names)} inputs for {len(schema.features)} features"
        )
    if task == "classification":
        second = "probabilities" if hasattr(estimator, "predict_proba") else "scores"
        outputs = {"label": out_names[0], second: out_names[1]}
        classes: list[Any] | None = [c.item() if hasattr(c, "item") else c for c in last.classes_]
    else:
        outputs, classes = {"value": out_names[0]}, None
    return Converted(
        onnx_bytes=data,
        sha256=hashlib.sha256(data).hexdigest(),
        task=task,
        classes=classes,
        outputs=outputs,
        inputs=inputs,
        schema=schema,
    )
