"""The reference profile: what the deploy-time data looked like, small enough to store.

    {"format": "mrm.reference-profile.v1", "rows": 569,
     "features": {
       "age": {"kind": "numeric", "edges": [...], "proportions": [...], "min", "max",
               "mean", "std", "missing", "sample": [...]},
       "region": {"kind": "categorical", "counts": {"north": 310, ..., "__other__": 0},
                  "missing": 0.0}},
     "predictions": {"0": 212, "1": 357}, "scores": <numeric entry> | null,
     "metrics": {"accuracy": 0.95, ...}, "monitor": <MonitorConfig.to_json()>,
     "fairness": <mrm.drift.fairness.FairnessReference.to_json()>}

`fairness` is there only when the version was deployed with `[fairness]`: the
sensitive attributes (and which are model inputs), the favourable label,
`min_group_size`, the fairness gates and the deploy-time group figures. A profile
without it (every profile written before it existed) reads as no fairness.

Numeric bins are the deciles of the data (edges deduplicated, so a feature with ties has
fewer bins); when a window is binned, values below the first edge fall in the first bin and
values above the last in the last. `sample` is at most 2000 evenly spaced quantiles of the
data (all of it, sorted, when smaller), for the KS test and the Wasserstein distance: it is
deterministic, unlike a random sample. Categories are strings; the 50 most frequent are
kept and the rest are counted under `__other__`. Missing means None or NaN; shares are
of all rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig
from mrm.drift.fairness_reference import FairnessReference

FORMAT = "mrm.reference-profile.v1"
BINS = 10
SAMPLE = 2000
TOP_CATEGORIES = 50
OTHER = "__other__"

Kind = Literal["numeric", "categorical"]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def is_missing(value: object) -> bool:
    """None, NaN and pandas' NA/NaT."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def category(value: object) -> str:
    """A category's string form; a whole float (1.0, from a column with NaN) reads as 1."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def as_floats(values: Iterable[object]) -> FloatArray:
    """A float array with NaN for every missing or non-numeric value."""
    items = list(values)
    if all(type(v) is float or (type(v) is int and -_EXACT < v < _EXACT) for v in items):
        # What JSON bodies hold: converted directly, as pandas would, without a Series.
        return np.asarray(items, dtype=np.float64)
    series = pd.to_numeric(pd.Series(items, dtype=object), errors="coerce")
    return np.asarray(series, dtype=np.float64)


_EXACT = 2**53
"""Integers below this in magnitude are exact as floats."""


def _bin_counts(edges: Sequence[float], present: FloatArray) -> FloatArray:
    """Counts in the bins between `edges` (one bin when fewer than 3 edges); values
    below the first interior edge count in the first bin, from the last one in the last."""
    interior = np.asarray(edges[1:-1], dtype=np.float64)
    index = np.searchsorted(interior, present, side="right")
    return np.bincount(index, minlength=max(len(edges) - 1, 1)).astype(np.float64)


@dataclass(frozen=True)
class NumericProfile:
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    min: float
    max: float
    mean: float
    std: float
    missing: float
    sample: tuple[float, ...]

    def bin_counts(self, present: FloatArray) -> FloatArray:
        """Counts per bin; outside values go to the first or last bin."""
        return _bin_counts(self.edges, present)

    def bin_labels(self) -> list[str]:
        e = [f"{x:.4g}" for x in self.edges]
        if len(e) <= 2:
            return ["all"]
        inner = [f"{e[i]} to {e[i + 1]}" for i in range(1, len(e) - 2)]
        return [f"< {e[1]}", *inner, f">= {e[-2]}"]

    @classmethod
    def build(cls, values: Iterable[object], where: str) -> NumericProfile:
        data = as_floats(values)
        present = np.sort(data[~np.isnan(data)])
        if present.size == 0:
            raise ValueError(f"{where}: no numeric values to profile")
        edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, BINS + 1)))
        edge_list = tuple(float(x) for x in edges)
        counts = _bin_counts(edge_list, present)
        if present.size > SAMPLE:
            sample = np.quantile(present, np.linspace(0.0, 1.0, SAMPLE))
        else:
            sample = present
        return cls(
            edges=edge_list,
            proportions=tuple(float(c) for c in counts / present.size),
            min=float(present[0]),
            max=float(present[-1]),
            mean=float(present.mean()),
            std=float(present.std()),
            missing=float(1.0 - present.size / data.size),
            sample=tuple(float(x) for x in sample),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "edges": list(self.edges),
            "proportions": list(self.proportions),
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "missing": self.missing,
            "sample": list(self.sample),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NumericProfile:
        return cls(
            edges=tuple(float(x) for x in data["edges"]),
            proportions=tuple(float(x) for x in data["proportions"]),
            min=float(data["min"]),
            max=float(data["max"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            missing=float(data["missing"]),
            sample=tuple(float(x) for x in data["sample"]),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    counts: dict[str, int]
    """The top categories and `__other__`, in descending count order."""
    missing: float

    @classmethod
    def build(cls, values: Iterable[object]) -> CategoricalProfile:
        items = list(values)
        present = [category(v) for v in items if not is_missing(v)]
        ranked = sorted(Counter(present).items(), key=lambda kv: (-kv[1], kv[0]))
        counts = dict(ranked[:TOP_CATEGORIES])
        counts[OTHER] = sum(c for _, c in ranked[TOP_CATEGORIES:])
        missing = 1.0 - len(present) / len(items) if items else 0.0
        return cls(counts, float(missing))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "categorical", "counts": dict(self.counts), "missing": self.missing}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        counts = {str(k): int(v) for k, v in data["counts"].items()}
        counts.setdefault(OTHER, 0)
        return cls(counts, float(data["missing"]))


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """A parsed, validated reference profile (see the module docstring for the JSON)."""

    rows: int
    features: dict[str, FeatureProfile]
    predictions: dict[str, int]
    scores: NumericProfile | None
    metrics: dict[str, float]
    monitor: MonitorConfig
    fairness: FairnessReference | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "rows": self.rows,
            "features": {name: f.to_json() for name, f in self.features.items()},
            "predictions": dict(self.predictions),
            "scores": None if self.scores is None else self.scores.to_json(),
            "metrics": dict(self.metrics),
            "monitor": self.monitor.to_json(),
        }
        if self.fairness is not None:  # absent otherwise: older profiles keep their bytes
            out["fairness"] = self.fairness.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Read a stored profile; ValueError for another format or a malformed entry."""
        if data.get("format") != FORMAT:
            raise ValueError(f"format: want {FORMAT!r}, got {data.get('format')!r}")
        try:
            features: dict[str, FeatureProfile] = {}
            for name, entry in data["features"].items():
                if entry["kind"] == "numeric":
                    features[name] = NumericProfile.from_json(entry)
                elif entry["kind"] == "categorical":
                    features[name] = CategoricalProfile.from_json(entry)
                else:
                    raise ValueError(f"features.{name}.kind: unknown {entry['kind']!r}")
            scores = data.get("scores")
            fairness = data.get("fairness")
            return cls(
                rows=int(data["rows"]),
                features=features,
                predictions={str(k): int(v) for k, v in data["predictions"].items()},
                scores=None if scores is None else NumericProfile.from_json(scores),
                metrics={str(k): float(v) for k, v in data["metrics"].items()},
                monitor=MonitorConfig.from_json(data["monitor"]),
                fairness=None if fairness is None else FairnessReference.from_json(fairness),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"reference profile: malformed ({type(e).__name__}: {e})") from e


def build_profile(
    frame: pd.DataFrame,
    kinds: Mapping[str, Kind],
    predictions: Sequence[object],
    scores: Sequence[float] | None,
    metrics: Mapping[str, float],
    config: MonitorConfig,
    fairness: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Profile the reference data (the evaluation set at deploy) as a JSON-ready dict."""
    features: dict[str, FeatureProfile] = {}
    for name, kind in kinds.items():
        if name not in frame.columns:
            raise ValueError(f"features.{name}: no such column in the data")
        if kind == "numeric":
            features[name] = NumericProfile.build(frame[name], f"features.{name}")
        elif kind == "categorical":
            features[name] = CategoricalProfile.build(frame[name])
        else:
            raise ValueError(f"features.{name}: kind must be numeric or categorical, got {kind!r}")
    labels = Counter(category(p) for p in predictions if not is_missing(p))
    clean_metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    return ReferenceProfile(
        rows=len(frame),
        features=features,
        predictions=dict(sorted(labels.items())),
        scores=None if scores is None else NumericProfile.build(scores, "scores"),
        metrics=clean_metrics,
        monitor=config,
        fairness=None if fairness is None else FairnessReference.from_json(fairness),
    ).to_json()
