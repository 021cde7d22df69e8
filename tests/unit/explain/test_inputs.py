"""Stored decisions in, feature rows and re-run outputs out; bad inputs get one clear line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pytest
from sklearn import ensemble, linear_model  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.schema import onnx_inputs
from mrm.explain.engine import ExplainError, ModelExplainer
from mrm.kernel.schema import Feature, InputSchema
from mrm.proxy.audit import prediction_record
from mrm.tlog.canonical import canonical_json
from tests.support.explain_models import Deployed, credit_pipeline, deploy


@pytest.fixture(scope="module")
def credit() -> Deployed:
    return deploy("credit", credit_pipeline(linear_model.LogisticRegression(), scale=True))


@pytest.fixture(scope="module")
def forest() -> Deployed:
    model = ensemble.RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    return deploy("cancer", model)


def stored_body(d: Deployed, rows: slice) -> dict[str, Any]:
    """The PREDICTION body the proxy writes for these rows (its own record builder)."""
    X = d.X.iloc[rows]
    sess = ort.InferenceSession(d.converted.onnx_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feeds = dict(zip(names, onnx_inputs(d.converted.schema, X), strict=True))
    outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    record = prediction_record(
        record_id="0190a6a8-0000-7000-8000-000000000000",
        model_name="credit-risk",
        model_version="1.2.4",
        onnx_sha256=d.converted.sha256,
        subject="",
        trace_id="",
        span_id="",
        inputs=feeds,
        outputs=outputs,
        request_id="r-1",
    )
    body: dict[str, Any] = json.loads(record.body_json)
    return body


@pytest.mark.parametrize("name", ["credit", "forest"])
def test_stored_request_rows_and_rerun(name: str, request: pytest.FixtureRequest) -> None:
    d: Deployed = request.getfixturevalue(name)
    body = stored_body(d, slice(3, 6))
    explainer = d.explainer()
    rows = explainer.rows_from_request(body["request"]["inputs"])
    assert len(rows) == 3
    for i, row in enumerate(rows):
        want = d.row(3 + i)
        assert list(row) == list(want)
        for k, v in want.items():
            assert type(row[k]) is type(v) or isinstance(v, float)
            assert row[k] == pytest.approx(v) if isinstance(v, float) else row[k] == v
    assert explainer.predict(body["request"]["inputs"]) == body["response"]
    e = explainer.explain(rows[2])
    label = body["response"]["label"][2]
    assert e.predicted_label == str(label)


def test_a_changed_model_does_not_reproduce(forest: Deployed) -> None:
    body = stored_body(forest, slice(0, 4))
    other = deploy("cancer", ensemble.RandomForestClassifier(n_estimators=3, random_state=1))
    assert other.explainer().predict(body["request"]["inputs"]) != body["response"]


def test_bad_request_inputs(credit: Deployed, forest: Deployed) -> None:
    inputs = stored_body(credit, slice(0, 2))["request"]["inputs"]
    explainer = credit.explainer()
    with pytest.raises(ExplainError, match="lacks the ONNX input 'city'"):
        explainer.rows_from_request({k: v for k, v in inputs.items() if k != "city"})
    with pytest.raises(ExplainError, match="does not take: \\['zip'\\]"):
        explainer.rows_from_request(inputs | {"zip": ["69001", "69002"]})
    with pytest.raises(ExplainError, match="input 'income' has 1 rows, the others 2"):
        explainer.rows_from_request(inputs | {"income": [[30.0]]})
    with pytest.raises(ExplainError, match="'city' must hold strings"):
        explainer.rows_from_request(inputs | {"city": [1, 2]})
    with pytest.raises(ExplainError, match="'income' does not hold float32"):
        explainer.predict(inputs | {"income": [["a"], ["b"]]})
    tensor = forest.explainer()
    with pytest.raises(ExplainError, match=r"has shape \[2, 3\], want \[N, 30\]"):
        tensor.rows_from_request({"input": [[1, 2, 3], [4, 5, 6]]})
    with pytest.raises(ExplainError, match="not an object"):
        tensor.rows_from_request([1, 2])  # type: ignore[arg-type]


def test_bad_rows_and_classes(credit: Deployed) -> None:
    explainer = credit.explainer()
    row = credit.row(0)
    with pytest.raises(ExplainError, match="the row lacks the feature 'city'"):
        explainer.explain({k: v for k, v in row.items() if k != "city"})
    with pytest.raises(ExplainError, match="feature 'income' is not float"):
        explainer.explain(row | {"income": "lots"})
    with pytest.raises(ExplainError, match="feature 'city' must be a string"):
        explainer.explain(row | {"city": 3})
    with pytest.raises(
        ExplainError, match=r"class 'yes' is not one of the model's classes \['0', '1'\]"
    ):
        explainer.explain(row, class_label="yes")
    with pytest.raises(ExplainError, match="class"):
        explainer.baseline(class_label="yes")


def test_regressor_has_no_class() -> None:
    d = deploy("regression", linear_model.Ridge())
    with pytest.raises(ExplainError, match="the model is a regressor"):
        d.explainer().explain(d.row(0), class_label="1")


def test_bad_model_schema_and_background(credit: Deployed, forest: Deployed) -> None:
    onnx_bytes, schema, csv = credit.converted.onnx_bytes, credit.converted.schema, credit.csv
    with pytest.raises(ExplainError, match=r"^the ONNX model cannot be read"):
        ModelExplainer.from_onnx(b"\x08\x07garbage\xff\xfe", schema.to_json(), csv)
    with pytest.raises(ExplainError, match=r"^the ONNX model cannot be read"):
        ModelExplainer.from_onnx(b"", schema.to_json(), csv)
    with pytest.raises(ExplainError, match=r"^the input schema is invalid"):
        ModelExplainer.from_onnx(onnx_bytes, '{"format": "other"}', csv)
    three = InputSchema(tuple(Feature(f"x{i}", "float", i) for i in range(3)), "tensor")
    with pytest.raises(ExplainError, match="mode tensor needs one ONNX input, the model has 5"):
        ModelExplainer.from_onnx(onnx_bytes, three.to_json(), csv)
    with pytest.raises(ExplainError, match="input 'input' has 30 columns, the schema 3"):
        ModelExplainer.from_onnx(forest.converted.onnx_bytes, three.to_json(), forest.csv)
    swapped = InputSchema(
        tuple(
            Feature(f.name, "float" if f.name == "city" else f.dtype, f.position)
            for f in schema.features
        ),
        "columns",
    )
    with pytest.raises(ExplainError, match="feature 'city' is float, ONNX input 'city' has"):
        ModelExplainer.from_onnx(onnx_bytes, swapped.to_json(), csv)
    fewer = InputSchema(schema.features[:4], "columns")
    with pytest.raises(ExplainError, match="the schema has 4 features, the ONNX model 5 inputs"):
        ModelExplainer.from_onnx(onnx_bytes, fewer.to_json(), csv)
    with pytest.raises(ExplainError, match=r"background sample lacks the features \['housing'\]"):
        ModelExplainer.from_onnx(
            onnx_bytes, schema.to_json(), b"age,income,debt_to_income,city\n1,2,3,Lyon\n"
        )
    with pytest.raises(ExplainError, match="background sample has no rows"):
        ModelExplainer.from_onnx(onnx_bytes, schema.to_json(), csv.splitlines(keepends=True)[0])
    with pytest.raises(ExplainError, match="background column 'age' is not int"):
        ModelExplainer.from_onnx(onnx_bytes, schema.to_json(), csv.replace(b"\n3", b"\nx", 1))
    with pytest.raises(ExplainError, match="force_method 'magic' is unknown"):
        credit.explainer(force_method="magic")


def test_error_messages_are_one_line(credit: Deployed) -> None:
    with pytest.raises(ExplainError) as info:
        ModelExplainer.from_onnx(b"\x00" * 64, credit.converted.schema.to_json(), credit.csv)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("force", [None, "kernel"])
def test_explanations_and_baselines_are_canonical_json(credit: Deployed, force: str | None) -> None:
    """What the ledger records: every field, parameters included, is plain JSON."""
    explainer = credit.explainer(force_method=force)
    for item in (explainer.explain(credit.row(0)), explainer.baseline()):
        doc = dataclasses.asdict(item)
        assert json.loads(canonical_json(doc)) == json.loads(json.dumps(doc))
