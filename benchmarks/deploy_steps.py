"""Wall time of each `mrmctl deploy` step, against the same work in a plain script.

Run: `.venv/bin/python -m benchmarks.deploy_steps`.
A 100-tree gradient-boosting classifier on 30 features, 1,000 evaluation rows.
The plain script does what a careful engineer would write by hand: unpickle,
skl2onnx, onnxruntime against predict_proba, scikit-learn's metrics, hash the
training file, write the artifacts to disk. The deploy runs the real pipeline
(restricted unpickler, schema, checks) and publishes to a real `mrm up` on
PostgreSQL. SHAP baselines are not part of either yet (the Explain service).
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import make_classification  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped,unused-ignore]

from benchmarks._support import fresh_pg_database, mrm_up, save
from mrm.client.registry import RegistryClient
from mrm.deploy.config import DeployConfig
from mrm.deploy.pipeline import prepare, publish


def build(tmp: Path) -> None:
    X, y = make_classification(n_samples=4000, n_features=30, n_informative=12, random_state=0)
    cols = [f"f{i:02d}" for i in range(30)]
    frame = pd.DataFrame(X, columns=cols)
    model = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(frame[:3000], y[:3000])
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    frame[:3000].assign(target=y[:3000]).to_csv(tmp / "train.csv", index=False)
    frame[3000:].assign(target=y[3000:]).to_csv(tmp / "eval.csv", index=False)


def plain_script(tmp: Path) -> dict[str, float]:
    t: dict[str, float] = {}
    start = time.perf_counter()
    model: Any = pickle.loads((tmp / "model.pkl").read_bytes())
    t["load"] = time.perf_counter() - start
    start = time.perf_counter()
    data = pd.read_csv(tmp / "eval.csv")
    X, y = data.drop(columns=["target"]), data["target"]
    t["eval_data"] = time.perf_counter() - start
    start = time.perf_counter()
    onx = to_onnx(model, X[:1].to_numpy(np.float32), options={id(model): {"zipmap": False}})
    t["convert"] = time.perf_counter() - start
    start = time.perf_counter()
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {sess.get_inputs()[0].name: X.to_numpy(np.float32)})
    assert (label == model.predict(X)).all()
    assert np.abs(proba - model.predict_proba(X)).max() < 1e-4
    t["fidelity"] = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(X)
    for fn in (
        metrics.accuracy_score,
        metrics.f1_score,
        metrics.precision_score,
        metrics.recall_score,
    ):
        fn(y, pred)
    metrics.roc_auc_score(y, model.predict_proba(X)[:, 1])
    t["metrics"] = time.perf_counter() - start
    start = time.perf_counter()
    hashlib.sha256((tmp / "train.csv").read_bytes()).hexdigest()
    t["lineage"] = time.perf_counter() - start
    start = time.perf_counter()
    (tmp / "out.onnx").write_bytes(onx.SerializeToString())
    t["publish"] = time.perf_counter() - start
    return t


def main() -> None:
    with tempfile.TemporaryDirectory() as d, fresh_pg_database() as url:
        tmp = Path(d)
        build(tmp)
        plain = plain_script(tmp)
        cfg = DeployConfig(
            model_path=tmp / "model.pkl",
            version="1.0.0",
            name="bench",
            eval_data=tmp / "eval.csv",
            target="target",
            dataset_id=None,
            training_data=tmp / "train.csv",
            source_commit="0" * 40,
            stage="production",
            sample_rate=1.0,
            fidelity_tolerance=1e-4,
        )
        with mrm_up(url, tmp / "home") as server:
            start = time.perf_counter()
            prepared = prepare(cfg, lambda _s, _d: None, env={})
            with RegistryClient(server.registry_addr) as reg:
                p0 = time.perf_counter()
                publish(cfg, prepared, reg, lambda _s, _d: None)
                publish_s = time.perf_counter() - p0
            total = time.perf_counter() - start
    steps = prepared.timings | {"publish": publish_s}
    plain_total = sum(plain.values())
    save(
        "deploy_steps",
        {
            "model": "GradientBoostingClassifier(100 trees), 30 features, 1000 eval rows",
            "mrmctl_deploy_s": {k: round(v, 4) for k, v in steps.items()}
            | {"total": round(total, 3)},
            "plain_script_s": {k: round(v, 4) for k, v in plain.items()}
            | {"total": round(plain_total, 3)},
            "ratio_total": round(total / plain_total, 2),
            "ratio_without_publish": round(
                (total - publish_s) / (plain_total - plain["publish"]), 2
            ),
        },
    )


if __name__ == "__main__":
    main()
