"""Judge a window of live traffic against the reference profile.

A feature drifts when an effect size reaches its threshold (psi, js, ks or normalised
wasserstein for numbers; psi, js or cramers_v for categories) and its test's p-value (KS
for numbers, chi-square for categories), Benjamini-Hochberg adjusted over the features,
is below `alpha`. Effect sizes keep a huge window's tiny, significant differences quiet;
the test keeps a small window's noise quiet. Data quality (a rise in the missing share,
values outside the reference's range) breaches on the share alone.

PSI and Jensen-Shannon work on the reference's bins (or categories), with empty bins set
to 1e-4 first so both stay finite. The Wasserstein distance is divided by the reference's
standard deviation (by 1 when that is 0), so its threshold has no unit. Cramér's V is
computed against the reference's proportions scaled to the window's size, so it does not
shrink as the window outgrows the reference; the chi-square p-value uses the real counts.
A window with fewer than `min_rows` rows is measured but not judged: no drift, no breaches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats  # type: ignore[import-untyped,unused-ignore]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped,unused-ignore]
from scipy.special import rel_entr  # type: ignore[import-untyped,unused-ignore]
from scipy.stats.contingency import association  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig, Thresholds
from mrm.drift.profile import (
    OTHER,
    CategoricalProfile,
    FloatArray,
    NumericProfile,
    ReferenceProfile,
    as_floats,
    category,
    is_missing,
)

EPSILON = 1e-4

Rule = Literal["feature_drift", "prediction_drift", "data_quality", "performance", "fairness"]


@dataclass(frozen=True)
class Window:
    """One window of live traffic: a list per feature (None or NaN = missing)."""

    features: Mapping[str, Sequence[object]]
    predictions: Sequence[object]
    scores: Sequence[float] | None = None

    @property
    def rows(self) -> int:
        """The row count; every non-empty column must have it (an empty one is absent)."""
        columns = [*self.features.values(), self.predictions]
        if self.scores is not None:
            columns.append(self.scores)
        lengths = {len(c) for c in columns if len(c)}
        if len(lengths) > 1:
            raise ValueError(f"window: columns differ in length ({sorted(lengths)})")
        return lengths.pop() if lengths else 0


@dataclass(frozen=True)
class Breach:
    """A rule broken: `value` (the measured quantity) reached `threshold`."""

    rule: Rule
    metric: str
    feature: str | None
    value: float
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeatureDrift:
    """One feature's statistics for one window; None where a statistic does not apply."""

    name: str
    kind: Literal["numeric", "categorical"]
    psi: float | None = None
    js: float | None = None
    ks: float | None = None
    ks_p: float | None = None
    wasserstein: float | None = None
    chi2_p: float | None = None
    cramers_v: float | None = None
    missing_share: float = 0.0
    out_of_range_share: float | None = None
    p_adjusted: float | None = None
    drifted: bool = False
    reasons: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)

    @property
    def p_value(self) -> float | None:
        return self.ks_p if self.kind == "numeric" else self.chi2_p

    def effects(self, t: Thresholds) -> list[tuple[str, float, float]]:
        """(metric, value, threshold) for each effect size at or over its threshold."""
        if self.kind == "numeric":
            pairs = [("psi", self.psi, t.psi), ("js", self.js, t.js), ("ks", self.ks, t.ks)]
            pairs.append(("wasserstein", self.wasserstein, t.wasserstein))
        else:
            pairs = [("psi", self.psi, t.psi), ("js", self.js, t.js)]
            pairs.append(("cramers_v", self.cramers_v, t.cramers_v))
        return [(m, v, th) for m, v, th in pairs if v is not None and v >= th]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PredictionDrift:
    """The predicted labels' distribution vs the reference's."""

    psi: float
    js: float
    chi2_p: float
    labels: list[str]
    reference: list[float]
    current: list[float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftReport:
    rows: int
    judged: bool
    features: list[FeatureDrift]
    """Sorted by psi, highest first."""
    prediction: PredictionDrift | None
    scores: FeatureDrift | None
    breaches: list[Breach]

    def top_features(self, n: int) -> list[FeatureDrift]:
        return self.features[:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "judged": self.judged,
            "features": [f.to_json() for f in self.features],
            "prediction": None if self.prediction is None else self.prediction.to_json(),
            "scores": None if self.scores is None else self.scores.to_json(),
            "breaches": [b.to_json() for b in self.breaches],
        }


def _smooth(counts: FloatArray) -> FloatArray:
    total = counts.sum()
    p = counts / total if total > 0 else np.full(counts.shape, 1.0 / counts.size)
    p = np.where(p == 0, EPSILON, p)
    return np.asarray(p / p.sum(), dtype=np.float64)


def _psi_js(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """PSI = sum (p - q) log(p / q) = KL(p||q) + KL(q||p), and the JS distance (base 2)."""
    p, q = _smooth(current), _smooth(reference)
    psi = float(np.sum(rel_entr(p, q) + rel_entr(q, p)))
    return psi, float(jensenshannon(p, q, base=2))


def _chi2(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """Chi-square p over the real counts, and Cramér's V against the reference's
    proportions scaled to the window's size."""
    keep = (reference + current) > 0
    ref, cur = reference[keep], current[keep]
    if keep.sum() < 2 or ref.sum() == 0 or cur.sum() == 0:
        return 1.0, 0.0
    p = float(stats.chi2_contingency(np.vstack([ref, cur])).pvalue)
    scaled = np.rint(ref / ref.sum() * cur.sum())
    balanced = np.vstack([scaled, cur]).astype(np.int64)
    balanced = balanced[:, balanced.sum(axis=0) > 0]
    v = float(association(balanced, method="cramer")) if balanced.shape[1] >= 2 else 0.0
    return p, v


EXACT_KS_MAX_N = 10_000
"""Up to this sample size scipy's `ks_2samp` (method "auto") computes the exact p-value."""

_exact_ks: dict[tuple[int, int, int], tuple[float, float]] = {}


def ks_2samp(present: FloatArray, sample: FloatArray) -> tuple[float, float]:
    """scipy's two-sided `ks_2samp`: (statistic, p-value).

    Its exact p-value costs O(n1 * n2) and is a function of the sample sizes and of
    the statistic in units of 1 / lcm(n1, n2) alone (the statistic it returns is that
    multiple). Windows of one size meet the same few multiples again and again, so
    each is asked of scipy once; the multiple is counted here in integers."""
    n1, n2 = present.size, sample.size
    if min(n1, n2) == 0 or max(n1, n2) > EXACT_KS_MAX_N:
        ks = stats.ks_2samp(present, sample)
        return float(ks.statistic), float(ks.pvalue)
    a, b = np.sort(present), np.sort(sample)
    both = np.concatenate([a, b])
    lcm = math.lcm(n1, n2)
    below1 = np.searchsorted(a, both, side="right").astype(np.int64) * (lcm // n1)
    below2 = np.searchsorted(b, both, side="right").astype(np.int64) * (lcm // n2)
    key = (n1, n2, int(np.abs(below1 - below2).max()))
    found = _exact_ks.get(key)
    if found is None:
        ks = stats.ks_2samp(present, sample)
        if len(_exact_ks) >= 65_536:
            _exact_ks.clear()
        found = _exact_ks[key] = (float(ks.statistic), float(ks.pvalue))
    return found


def _numeric(name: str, ref: NumericProfile, column: Sequence[object]) -> FeatureDrift:
    data = as_floats(column)
    present = data[~np.isnan(data)]
    drift = FeatureDrift(name, "numeric", labels=ref.bin_labels())
    drift.reference = list(ref.proportions)
    drift.missing_share = float(1.0 - present.size / data.size) if data.size else 0.0
    if present.size == 0:
        return drift
    counts = ref.bin_counts(present)
    drift.current = [float(c) for c in counts / present.size]
    drift.psi, drift.js = _psi_js(np.asarray(ref.proportions, dtype=np.float64), counts)
    sample = np.asarray(ref.sample, dtype=np.float64)
    drift.ks, drift.ks_p = ks_2samp(present, sample)
    scale = ref.std if ref.std > 0 else 1.0
    drift.wasserstein = float(stats.wasserstein_distance(present, sample)) / scale
    outside = (present < ref.min) | (present > ref.max)
    drift.out_of_range_share = float(outside.mean())
    return drift


def _categorical(name: str, ref: CategoricalProfile, column: Sequence[object]) -> FeatureDrift:
    present = [category(v) for v in column if not is_missing(v)]
    labels = list(ref.counts)
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros(len(labels), dtype=np.float64)
    for value in present:
        counts[index.get(value, index[OTHER])] += 1
    reference = np.asarray([ref.counts[label] for label in labels], dtype=np.float64)
    drift = FeatureDrift(name, "categorical", labels=labels)
    drift.reference = [float(x) for x in reference / max(reference.sum(), 1.0)]
    drift.missing_share = float(1.0 - len(present) / len(column)) if len(column) else 0.0
    if not present:
        return drift
    drift.current = [float(x) for x in counts / counts.sum()]
    drift.psi, drift.js = _psi_js(reference, counts)
    drift.chi2_p, drift.cramers_v = _chi2(reference, counts)
    return drift


def _prediction(ref: Mapping[str, int], predictions: Sequence[object]) -> PredictionDrift | None:
    seen = [category(p) for p in predictions if not is_missing(p)]
    if not seen or not ref:
        return None
    labels = list(ref) + sorted(set(seen) - set(ref))
    reference = np.asarray([ref.get(label, 0) for label in labels], dtype=np.float64)
    current = np.asarray([seen.count(label) for label in labels], dtype=np.float64)
    psi, js = _psi_js(reference, current)
    p, _ = _chi2(reference, current)
    return PredictionDrift(
        psi=psi,
        js=js,
        chi2_p=p,
        labels=labels,
        reference=[float(x) for x in reference / reference.sum()],
        current=[float(x) for x in current / current.sum()],
    )


def _quality(drift: FeatureDrift, reference_missing: float, t: Thresholds) -> list[Breach]:
    out = []
    rise = drift.missing_share - reference_missing
    if rise >= t.missing:
        out.append(Breach("data_quality", "missing", drift.name, rise, t.missing))
    share = drift.out_of_range_share
    if share is not None and share >= t.out_of_range:
        out.append(Breach("data_quality", "out_of_range", drift.name, share, t.out_of_range))
    return out


def compare(profile: ReferenceProfile, window: Window) -> DriftReport:
    """The window's drift against the profile, judged with the profile's `monitor` config."""
    config: MonitorConfig = profile.monitor
    t = config.thresholds
    rows = window.rows
    judged = rows >= config.min_rows
    features: list[FeatureDrift] = []
    for name, ref in profile.features.items():
        if name not in window.features:
            raise ValueError(f"window.features.{name}: missing (the profile has it)")
        column = window.features[name]
        if isinstance(ref, NumericProfile):
            features.append(_numeric(name, ref, column))
        else:
            features.append(_categorical(name, ref, column))

    tested = [f for f in features if f.p_value is not None]
    if tested:
        ps = np.asarray([f.p_value for f in tested], dtype=np.float64)
        for f, p in zip(tested, stats.false_discovery_control(ps, method="bh"), strict=True):
            f.p_adjusted = float(p)

    breaches: list[Breach] = []
    scores = None
    if profile.scores is not None and window.scores is not None and len(window.scores):
        scores = _numeric("scores", profile.scores, window.scores)
    prediction = _prediction(profile.predictions, window.predictions)
    if judged:
        for f in features:
            crossed = f.effects(t)
            if crossed and f.p_adjusted is not None and f.p_adjusted < config.alpha:
                f.drifted = True
                for metric, value, threshold in crossed:
                    f.reasons.append(f"{metric} {value:.3g} >= {threshold:g}")
                    breaches.append(Breach("feature_drift", metric, f.name, value, threshold))
            quality = _quality(f, profile.features[f.name].missing, t)
            f.reasons.extend(f"{b.metric} {b.value:.3g} >= {b.threshold:g}" for b in quality)
            breaches.extend(quality)
        if (
            prediction is not None
            and prediction.psi >= t.prediction_psi
            and prediction.chi2_p < config.alpha
        ):
            breaches.append(
                Breach("prediction_drift", "prediction_psi", None, prediction.psi, t.prediction_psi)
            )
        if (
            scores is not None
            and scores.psi is not None
            and scores.psi >= t.prediction_psi
            and scores.ks_p is not None
            and scores.ks_p < config.alpha
        ):
            scores.drifted = True
            scores.reasons.append(f"psi {scores.psi:.3g} >= {t.prediction_psi:g}")
            breaches.append(
                Breach("prediction_drift", "score_psi", None, scores.psi, t.prediction_psi)
            )

    features.sort(key=lambda f: -1.0 if f.psi is None else f.psi, reverse=True)
    return DriftReport(rows, judged, features, prediction, scores, breaches)
