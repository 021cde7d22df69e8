"""One decision explained from ONNX, against shap's KernelExplainer on the same row.

Run: `.venv/bin/python -m benchmarks.explain_decision`.
A 100-tree gradient-boosting classifier on 30 features, converted as `mrmctl
deploy` converts it, with the deploy pipeline's background sample (100 rows).
Side by side in one run, on the same rows and the same background:

- `ModelExplainer.explain`: exact interventional TreeSHAP read from the ONNX
  graph (what ExplainRecord computes per decision, without the RPC);
- shap's KernelExplainer on the scikit-learn model's predict_proba (nsamples
  "auto", l1_reg off), the model-agnostic way to get the same numbers;
- for context, the engine's own Kernel SHAP fallback on the ONNX model.

Times are medians per decision; the explainers are built once, outside the timing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import shap  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import make_classification  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped,unused-ignore]

from benchmarks._support import save
from mrm.deploy.convert import convert
from mrm.deploy.pipeline import _background_sample
from mrm.deploy.schema import infer_schema
from mrm.explain.engine import ModelExplainer

ROWS = 5  # decisions timed (the kernel takes seconds each)
REPEATS_FAST = 20  # repeats per decision for the exact path


def _median(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    X, y = make_classification(n_samples=4000, n_features=30, n_informative=12, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(30)]).round(4)
    model = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(frame[:3000], y[:3000])
    X_eval = frame[3000:].reset_index(drop=True)
    schema = infer_schema(model, X_eval)
    converted = convert(model, schema)
    csv = _background_sample(X_eval, 100)
    background = X_eval.sample(n=100, random_state=0)

    start = time.perf_counter()
    explainer = ModelExplainer.from_onnx(converted.onnx_bytes, schema.to_json(), csv)
    build_s = time.perf_counter() - start
    fallback = ModelExplainer.from_onnx(
        converted.onnx_bytes, schema.to_json(), csv, force_method="kernel"
    )
    kernel = shap.KernelExplainer(model.predict_proba, background)

    rows = [{k: float(v) for k, v in X_eval.iloc[i].items()} for i in range(ROWS)]
    explainer.explain(rows[0])  # first call compiles nothing, but warms caches
    onnx_s, kernel_s, fallback_s, additivity = [], [], [], []
    for i, row in enumerate(rows):
        onnx_s.append(_median(lambda r=row: explainer.explain(r), REPEATS_FAST))  # type: ignore[misc]
        additivity.append(explainer.explain(row).additivity_error)
        np.random.seed(0)
        x = X_eval.iloc[i : i + 1]
        kernel_s.append(_median(lambda x=x: kernel.shap_values(x, silent=True, l1_reg=False), 1))  # type: ignore[misc]
        fallback_s.append(_median(lambda r=row: fallback.explain(r), 1))  # type: ignore[misc]
    start = time.perf_counter()
    baseline = explainer.baseline()
    baseline_s = time.perf_counter() - start
    onnx_med, kernel_med = statistics.median(onnx_s), statistics.median(kernel_s)
    save(
        "explain_decision",
        {
            "model": "GradientBoostingClassifier(100 trees), 30 features, background 100 rows",
            "decisions": ROWS,
            "onnx_tree_shap_ms_median": round(onnx_med * 1000, 2),
            "shap_kernel_on_sklearn_ms_median": round(kernel_med * 1000, 1),
            "speedup_vs_kernel": round(kernel_med / onnx_med, 1),
            "target_speedup": 20,
            "engine_kernel_fallback_on_onnx_ms_median": round(
                statistics.median(fallback_s) * 1000, 1
            ),
            "kernel_nsamples": int(kernel.nsamples),
            "max_additivity_error": max(additivity),
            "explainer_build_ms": round(build_s * 1000, 1),
            "baseline_ms": round(baseline_s * 1000, 1),
            "baseline_method": baseline.method,
            "shap_version": shap.__version__,
        },
    )


if __name__ == "__main__":
    main()
