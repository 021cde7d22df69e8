"""The reference profile of a version: what its evaluation data looked like.

Built at deploy from the same rows the metrics were measured on and stored as
the version's ARTIFACT_ROLE_REFERENCE_PROFILE (its sha256 is in MODEL_INGESTED):
per-feature bins and frequencies, the prediction and score distributions, the
metrics and the `[monitor]` settings, and with `[fairness]` what the monitor needs
to judge fairness in production (mrm.drift.fairness_reference). The monitor
measures drift against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig
from mrm.drift.fairness_reference import fairness_reference
from mrm.drift.profile import build_profile
from mrm.kernel.schema import InputSchema

_KIND: dict[str, Literal["numeric", "categorical"]] = {
    "float": "numeric",
    "int": "numeric",
    "string": "categorical",
    "bool": "categorical",
}


def reference_profile(
    estimator: Any,
    X: Any,
    schema: InputSchema,
    metrics: Mapping[str, Any],
    config: MonitorConfig,
    fairness: tuple[Mapping[str, Any], int] | None = None,
) -> bytes:
    """The profile as canonical JSON bytes (sorted keys), ready to upload. `fairness`
    is the FAIRNESS_SNAPSHOT body and `[fairness] min_group_size`, with `[fairness]`."""
    names = [f.name for f in schema.features]
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X), columns=names)
    frame = frame[names]
    kinds = {f.name: _KIND[f.dtype] for f in schema.features}
    outputs = [p.item() if hasattr(p, "item") else p for p in estimator.predict(X)]
    scores: list[float] | None = None
    predictions: list[object] = []
    if metrics.get("task") == "classification":
        predictions = outputs  # labels: their distribution is the prediction drift
        if hasattr(estimator, "predict_proba"):
            proba = np.asarray(estimator.predict_proba(X))
            if proba.ndim == 2 and proba.shape[1] == 2:
                scores = [float(v) for v in proba[:, 1]]
    else:
        scores = [float(v) for v in outputs]  # a regressor's output is its score
    numbers = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    fair = None if fairness is None else fairness_reference(fairness[0], fairness[1], names)
    profile = build_profile(frame, kinds, predictions, scores, numbers, config, fair)
    return orjson.dumps(profile, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
