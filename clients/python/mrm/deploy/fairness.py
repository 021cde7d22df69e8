"""The fairness snapshot: fairlearn's group metrics on the evaluation data.

Outcomes are reduced to favourable (the subject gets `favourable_label`) or
not, so a selection rate is the share of favourable decisions, a true
positive rate the share of truly favourable subjects the model favours, and a
false positive rate the share of truly unfavourable ones it favours anyway.

Per sensitive attribute, every group is reported with fairlearn's
`MetricFrame` (count, selection rate, accuracy, TPR, FPR). TPR is null for a
group with no truly favourable rows and FPR for one with none unfavourable
(fairlearn would say 0). Groups smaller than `min_group_size` are flagged
`small` and left out of the summaries: fairlearn's
`demographic_parity_difference`, `demographic_parity_ratio` and
`equalized_odds_difference` over the rows of the other groups. With fewer
than two such groups an attribute's summaries are null and a configured gate
fails: there is nothing to compare.

Confidence intervals (95%, percentile bootstrap, `bootstrap` resamples of
all rows, seed 0) come from the confusion counts of each group in each
resample. fairlearn's own `MetricFrame(n_boot=...)` builds a frame per
resample and takes over a minute for 1,000 resamples of 2,000 rows, too slow
for a CI step; the counts give the same statistics (the unit tests compare
them with fairlearn's on resampled rows) in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrm.deploy.errors import DeployError
from mrm.drift.fairness import group_metrics

KEYS = ("sensitive", "favourable_label", "bootstrap", "min_group_size")
GATES = ("min_demographic_parity_ratio", "max_equalized_odds_difference")
MAX_GROUPS = 100
"""More groups than this in one attribute is a continuous column, not a group."""
_MISSING = "(missing)"
_CHUNK = 100_000  # resampled rows per batch of resamples: bounds memory
_QUANTILES = (0.025, 0.975)


@dataclass(frozen=True)
class FairnessConfig:
    """The [fairness] table and the fairness gates of [gates]."""

    sensitive: tuple[str, ...]
    favourable_label: str
    bootstrap: int = 1000
    min_group_size: int = 30
    min_demographic_parity_ratio: float | None = None
    max_equalized_odds_difference: float | None = None

    @classmethod
    def from_tables(
        cls, table: dict[str, Any], gates: dict[str, Any], where: str
    ) -> FairnessConfig | None:
        """None without a [fairness] table; a DeployError naming the key otherwise."""
        gated = {k: gates[k] for k in GATES if k in gates}
        if not table:
            if gated:
                raise DeployError(
                    f"[gates] {next(iter(gated))} in {where}: needs a [fairness] table naming "
                    'the sensitive columns, e.g. sensitive = ["sex"]'
                )
            return None
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise DeployError(
                f"[fairness] {', '.join(unknown)} in {where}: want one of {', '.join(KEYS)}"
            )
        sensitive = table.get("sensitive")
        if (
            not isinstance(sensitive, list)
            or not sensitive
            or not all(isinstance(c, str) and c.strip() for c in sensitive)
        ):
            raise DeployError(
                f"[fairness] sensitive in {where}: want a list of column names, "
                'e.g. ["sex", "age_band"]'
            )
        twice = sorted({c for c in sensitive if sensitive.count(c) > 1})
        if twice:
            raise DeployError(f"[fairness] sensitive in {where}: {', '.join(twice)} named twice")
        if "favourable_label" not in table:
            raise DeployError(
                f"[fairness] favourable_label missing in {where}: name the label that is good "
                'for the subject, e.g. "0"'
            )
        label = table["favourable_label"]
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise DeployError(f"[fairness] favourable_label = {label!r} in {where}: want a label")
        boot = table.get("bootstrap", 1000)
        if isinstance(boot, bool) or not isinstance(boot, int) or not 100 <= boot <= 10_000:
            raise DeployError(f"[fairness] bootstrap = {boot!r} in {where}: want 100 to 10000")
        size = table.get("min_group_size", 30)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DeployError(
                f"[fairness] min_group_size = {size!r} in {where}: want a whole number >= 1"
            )
        return cls(
            sensitive=tuple(sensitive),
            favourable_label=str(label),
            bootstrap=boot,
            min_group_size=size,
            min_demographic_parity_ratio=_bound(gated, GATES[0], where, upper=1.0, open_low=True),
            max_equalized_odds_difference=_bound(gated, GATES[1], where, upper=1.0),
        )


def _bound(
    gates: dict[str, Any], key: str, where: str, *, upper: float, open_low: bool = False
) -> float | None:
    if key not in gates:
        return None
    value = gates[key]
    ok = not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)
    if not ok or not (0 < value <= upper if open_low else 0 <= value <= upper):
        want = "above 0 and at most 1" if open_low else "between 0 and 1"
        raise DeployError(f"[gates] {key} = {value!r} in {where}: want a number {want}")
    return float(value)


def group_labels(column: Any) -> np.ndarray[Any, Any]:
    """A sensitive column's values as group names: text, a missing value its own group."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    series = pd.Series(column)
    return np.asarray([_MISSING if pd.isna(v) else str(v) for v in series.to_list()], dtype=object)


def _num(value: Any) -> float | None:
    x = float(value)
    return x if math.isfinite(x) else None


def _interval(samples: np.ndarray[Any, Any]) -> list[float | None]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return [None, None]
    return [_num(q) for q in np.quantile(finite, _QUANTILES)]


def replicate_stats(
    codes: np.ndarray[Any, Any],
    truth: np.ndarray[Any, Any],
    pred: np.ndarray[Any, Any],
    groups: int,
    gated: np.ndarray[Any, Any],
    indices: np.ndarray[Any, Any],
) -> dict[str, np.ndarray[Any, Any]]:
    """Statistics of each resample (a row of `indices`): per-group selection rate
    (NaN for a group absent from it) and, over the `gated` groups present in it,
    the demographic-parity difference and ratio and equalized-odds difference as
    fairlearn computes them (a TPR or FPR with no rows to divide counts as 0)."""
    n_boot = indices.shape[0]
    cell = codes * 4 + truth * 2 + pred
    offsets = (np.arange(n_boot) * groups * 4)[:, None]
    counts = np.bincount((cell[indices] + offsets).ravel(), minlength=n_boot * groups * 4)
    c = counts.reshape(n_boot, groups, 2, 2).astype(float)  # [resample, group, truth, pred]
    total = c.sum(axis=(2, 3))
    present = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = np.where(present, c[:, :, :, 1].sum(axis=2) / total, np.nan)
        positives, negatives = c[:, :, 1, :].sum(axis=2), c[:, :, 0, :].sum(axis=2)
        tpr = np.where(positives > 0, c[:, :, 1, 1] / positives, 0.0)
        fpr = np.where(negatives > 0, c[:, :, 0, 1] / negatives, 0.0)
        use = present & gated[None, :]
        sel = np.where(use, selection, np.nan)
        lo, hi = _nanmin(sel), _nanmax(sel)
        eo = np.fmax(_spread(np.where(use, tpr, np.nan)), _spread(np.where(use, fpr, np.nan)))
        return {
            "selection_rate": selection,
            "demographic_parity_difference": hi - lo,
            "demographic_parity_ratio": lo / hi,
            "equalized_odds_difference": eo,
        }


def _nanmin(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.where(np.isnan(a).all(axis=1), np.nan, np.fmin.reduce(a, axis=1))


def _nanmax(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.where(np.isnan(a).all(axis=1), np.nan, np.fmax.reduce(a, axis=1))


def _spread(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    spread: np.ndarray[Any, Any] = _nanmax(a) - _nanmin(a)
    return spread


def _bootstrap(
    codes: np.ndarray[Any, Any],
    truth: np.ndarray[Any, Any],
    pred: np.ndarray[Any, Any],
    groups: int,
    gated: np.ndarray[Any, Any],
    n_boot: int,
) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    n = len(codes)
    per_chunk = max(1, _CHUNK // n)
    parts: list[dict[str, np.ndarray[Any, Any]]] = []
    for start in range(0, n_boot, per_chunk):
        size = min(per_chunk, n_boot - start)
        indices = rng.integers(0, n, size=(size, n))
        parts.append(replicate_stats(codes, truth, pred, groups, gated, indices))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _attribute(
    name: str,
    labels: np.ndarray[Any, Any],
    truth: np.ndarray[Any, Any],
    pred: np.ndarray[Any, Any],
    cfg: FairnessConfig,
) -> dict[str, Any]:
    import pandas as pd
    from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
    )

    by_group = group_metrics(name, labels, truth, pred)
    names = [str(g) for g in by_group.index]
    codes = np.asarray(pd.Categorical(labels, categories=names).codes, dtype=np.int64)
    sizes = {g: int(by_group.loc[g, "count"]) for g in names}
    gated = np.asarray([sizes[g] >= cfg.min_group_size for g in names])
    boot = _bootstrap(codes, truth, pred, len(names), gated, cfg.bootstrap)
    groups: dict[str, Any] = {}
    for i, g in enumerate(names):
        rows = codes == i
        groups[g] = {
            "count": sizes[g],
            "selection_rate": _num(by_group.loc[g, "selection_rate"]),
            "accuracy": _num(by_group.loc[g, "accuracy"]),
            "tpr": _num(by_group.loc[g, "tpr"]) if truth[rows].any() else None,
            "fpr": _num(by_group.loc[g, "fpr"]) if not truth[rows].all() else None,
            "ci": {"selection_rate": _interval(boot["selection_rate"][:, i])},
            "small": not gated[i],
        }
    out: dict[str, Any] = {"groups": groups}
    summaries = (
        ("demographic_parity_difference", demographic_parity_difference),
        ("demographic_parity_ratio", demographic_parity_ratio),
        ("equalized_odds_difference", equalized_odds_difference),
    )
    keep = gated[codes]
    comparable = int(gated.sum()) >= 2
    for key, fn in summaries:
        out[key] = (
            _num(fn(truth[keep], pred[keep], sensitive_features=labels[keep]))
            if comparable
            else None
        )
    out["ci"] = {key: _interval(boot[key]) if comparable else [None, None] for key, _ in summaries}
    return out


def _failures(name: str, attr: dict[str, Any], cfg: FairnessConfig) -> list[str]:
    minimum, maximum = cfg.min_demographic_parity_ratio, cfg.max_equalized_odds_difference
    if minimum is None and maximum is None:
        return []
    if attr["demographic_parity_ratio"] is None and attr["equalized_odds_difference"] is None:
        big = [g for g, v in attr["groups"].items() if not v["small"]]
        return [
            f"{name}: {len(big)} group(s) with at least {cfg.min_group_size} rows, the gates "
            "need two to compare"
        ]
    out = []
    ratio, eo = attr["demographic_parity_ratio"], attr["equalized_odds_difference"]
    rates = ", ".join(
        f"{g} {v['selection_rate']:.3f}" for g, v in attr["groups"].items() if not v["small"]
    )
    if minimum is not None and (ratio is None or ratio < minimum):
        shown = (
            "undefined (no group gets the favourable outcome)" if ratio is None else f"{ratio:.4f}"
        )
        out.append(
            f"{name}: demographic parity ratio {shown} is below min_demographic_parity_ratio "
            f"{minimum} (selection rates {rates})"
        )
    if maximum is not None and eo is not None and eo > maximum:
        out.append(
            f"{name}: equalized odds difference {eo:.4f} is above max_equalized_odds_difference "
            f"{maximum}"
        )
    return out


def fairness_snapshot(
    cfg: FairnessConfig,
    y_true: Any,
    y_pred: Any,
    sensitive: dict[str, Any],
    *,
    classes: Sequence[Any],
    rows: int,
    eval_sha256: str,
) -> dict[str, Any]:
    """The FAIRNESS_SNAPSHOT body (see the RecordKind's doc in ledger.proto).

    `sensitive` maps each attribute to its column of the evaluation rows;
    `classes` are the model's labels, one of which must be the favourable one.
    """
    import fairlearn  # type: ignore[import-untyped,unused-ignore]

    fav = cfg.favourable_label
    if fav not in {str(c) for c in classes}:
        raise DeployError(
            f"[fairness] favourable_label = {fav!r}: not a label of the model "
            f"({', '.join(repr(str(c)) for c in classes)})"
        )
    truth = np.asarray([str(v) == fav for v in y_true], dtype=np.int64)
    pred = np.asarray([str(v) == fav for v in y_pred], dtype=np.int64)
    attributes: dict[str, Any] = {}
    failures: list[str] = []
    for name in cfg.sensitive:
        labels = group_labels(sensitive[name])
        distinct = len(set(labels.tolist()))
        if distinct > MAX_GROUPS:
            raise DeployError(
                f"[fairness] sensitive column {name!r} has {distinct} distinct values (at most "
                f"{MAX_GROUPS}); band a continuous column first, e.g. age into age_band"
            )
        attributes[name] = _attribute(name, labels, truth, pred, cfg)
        failures += _failures(name, attributes[name], cfg)
    return {
        "favourable_label": fav,
        "data": {"rows": rows, "sha256": eval_sha256},
        "attributes": attributes,
        "gates": {
            "min_demographic_parity_ratio": cfg.min_demographic_parity_ratio,
            "max_equalized_odds_difference": cfg.max_equalized_odds_difference,
        },
        "passed": not failures,
        "failures": failures,
        "library": f"fairlearn {fairlearn.__version__}",
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_line(body: dict[str, Any]) -> str:
    """One line per deploy: each attribute's DP ratio with its interval and EO difference."""
    parts = []
    for name, attr in body["attributes"].items():
        lo, hi = attr["ci"]["demographic_parity_ratio"]
        small = [g for g, v in attr["groups"].items() if v["small"]]
        parts.append(
            f"{name}: DP ratio {_fmt(attr['demographic_parity_ratio'])} [{_fmt(lo)}, {_fmt(hi)}]"
            f", EO diff {_fmt(attr['equalized_odds_difference'])}"
            + (f" ({len(small)} small group(s) not gated)" if small else "")
        )
    return "; ".join(parts)


def fairness_summary(body: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's headline numbers, for the version's facts (`mrmctl models show`)."""
    keys = (
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
    )
    return {
        "passed": body["passed"],
        "favourable_label": body["favourable_label"],
        "attributes": {
            name: {k: attr[k] for k in keys} for name, attr in body["attributes"].items()
        },
    }
