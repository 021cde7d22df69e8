"""From served decisions to a drift verdict, through the real parts: a scikit-learn
model converted to ONNX, ONNX Runtime's outputs, the proxy's PREDICTION bodies,
and the reference profile `mrmctl deploy` stores."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped,unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.convert import convert
from mrm.deploy.metrics import snapshot
from mrm.deploy.reference import reference_profile
from mrm.deploy.schema import infer_schema, onnx_inputs
from mrm.drift.compare import compare
from mrm.drift.config import MonitorConfig
from mrm.drift.decisions import gather
from mrm.drift.profile import ReferenceProfile
from mrm.proxy.audit import prediction_record

FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst area"]


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    data = load_breast_cancer(as_frame=True)
    X = data.data[FEATURES].astype("float64")
    y = data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    schema = infer_schema(model, X)
    converted = convert(model, schema)
    session = ort.InferenceSession(converted.onnx_bytes, providers=["CPUExecutionProvider"])
    metrics = snapshot(model, X, y, eval_sha256="0" * 64)
    profile = reference_profile(model, X, schema, metrics, MonitorConfig.from_table({}))
    return {"X": X, "schema": schema, "session": session, "profile": profile}


def _bodies(served: dict[str, Any], frame: pd.DataFrame) -> list[tuple[str, dict[str, Any]]]:
    """One PREDICTION body per row, as the proxy records a one-row request."""
    session, schema = served["session"], served["schema"]
    names = [i.name for i in session.get_inputs()]
    out = []
    for i in range(len(frame)):
        row = frame.iloc[[i]]
        feeds = dict(zip(names, onnx_inputs(schema, row), strict=True))
        results = session.run(None, feeds)
        outputs = {
            o.name: np.asarray([[r[k] for k in sorted(r)] for r in v] if isinstance(v, list) else v)
            for o, v in zip(session.get_outputs(), results, strict=True)
        }
        record = prediction_record(
            record_id=f"r{i}",
            model_name="m",
            model_version="1.0.0",
            onnx_sha256="0" * 64,
            subject="",
            trace_id="",
            span_id="",
            inputs=feeds,
            outputs=outputs,
            request_id=str(i),
        )
        out.append((record.record_id, orjson.loads(record.body_json)))
    return out


def test_a_same_distribution_window_is_silent(served: dict[str, Any]) -> None:
    rng = np.random.default_rng(7)
    frame = served["X"].sample(600, replace=True, random_state=3)
    frame = frame + rng.normal(0, 0.01, frame.shape) * frame.std().to_numpy()
    window = gather(_bodies(served, frame), served["schema"])
    assert window.unreadable == 0
    assert window.rows == 600
    assert len(window.scores) == 600  # the positive-class probability of each decision
    report = compare(ReferenceProfile.from_json(orjson.loads(served["profile"])), window.window())
    assert report.judged
    assert report.breaches == []


def test_a_shifted_feature_is_found_and_named(served: dict[str, Any]) -> None:
    frame = served["X"].sample(600, replace=True, random_state=4).copy()
    frame["mean texture"] = frame["mean texture"] * 1.5
    window = gather(_bodies(served, frame), served["schema"])
    report = compare(ReferenceProfile.from_json(orjson.loads(served["profile"])), window.window())
    assert report.top_features(1)[0].name == "mean texture"
    drifted = {b.feature for b in report.breaches if b.rule == "feature_drift"}
    assert drifted == {"mean texture"}


def test_a_body_that_does_not_match_the_schema_is_counted_not_guessed(
    served: dict[str, Any],
) -> None:
    bodies = _bodies(served, served["X"].head(3))
    broken = {"request": {"inputs": {"x": [[1.0, 2.0]]}}, "response": {}}
    window = gather([*bodies, ("bad", broken), ("worse", {"request": "?"})], served["schema"])
    assert window.unreadable == 2
    assert window.rows == 3
    assert window.record_ids == ["r0", "r1", "r2"]
