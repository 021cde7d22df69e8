"""DRIFT and ALERT record bodies as the reports draw them.

The monitor appends one DRIFT record per evaluated window (its body: `window`,
`report` as mrm.drift.compare.DriftReport.to_json(), `thresholds`, and with
`[fairness]` a `fairness` section as mrm.drift.fairness.FairnessReport.to_json()) and ALERT
records (`state` "firing", or "acknowledged" naming the firing one in
`alert_record_id`). The bodies are read as JSON (this service does not import
the monitor's code). A body that cannot be read becomes a view saying so, with
the record's id and leaf, rather than a failed page: the record is still evidence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mrm.client.ledger import Record
from mrm.explain.distribution_plot import DistributionPlot, distribution_plot
from mrm.tlog.leaf import format_timestamp

TOP_FEATURES = 10
PLOTTED = 3


def _when(record: Record) -> str:
    ts = record.recorded_at
    return format_timestamp(ts.seconds * 1_000_000 + ts.nanos // 1000)


def _us_text(value: object) -> str:
    return format_timestamp(int(value)) if isinstance(value, int) and value >= 0 else ""


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class FeatureRow:
    name: str
    kind: str
    psi: float | None
    js: float | None
    ks: float | None
    wasserstein: float | None
    cramers_v: float | None
    p_adjusted: float | None
    missing_share: float | None
    drifted: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plot:
    """A chart the template draws (templates/distribution.svg); `ident` prefixes its ids."""

    plot: DistributionPlot
    ident: str


@dataclass(frozen=True)
class Shares:
    """A categorical distribution side by side (the predicted labels)."""

    psi: float | None
    js: float | None
    p_value: float | None
    rows: tuple[tuple[str, float, float | None], ...]


@dataclass(frozen=True)
class FairRow:
    """One sensitive attribute in a window: its groups and its summary against the gate."""

    attribute: str
    note: str
    """The summary beside its deploy-time value, or why the attribute is not monitored."""
    breached: bool
    groups: tuple[tuple[str, int | None, float | None, float | None, bool], ...] = ()
    """(group, rows, live selection rate, deploy-time selection rate, small)."""


@dataclass(frozen=True)
class DriftWindow:
    """One DRIFT record, ready to draw."""

    record_id: str
    leaf_index: int
    recorded_at: str
    model: str
    version: str
    first_leaf: int | None = None
    last_leaf: int | None = None
    first_at: str = ""
    last_at: str = ""
    decisions: int | None = None
    rows: int | None = None
    spec: str = ""
    judged: bool = False
    feature_count: int = 0
    drifted_count: int = 0
    features: tuple[FeatureRow, ...] = ()
    plots: tuple[Plot, ...] = ()
    prediction: Shares | None = None
    scores: FeatureRow | None = None
    breaches: tuple[str, ...] = ()
    thresholds: tuple[tuple[str, str], ...] = ()
    fairness: tuple[FairRow, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class AlertRow:
    record_id: str
    leaf_index: int
    recorded_at: str
    version: str
    summary: str
    rule: str
    feature: str
    drift_record_id: str
    acknowledged: bool
    ack_by: str = ""
    ack_at: str = ""
    ack_note: str = ""
    ack_record_id: str = ""


@dataclass(frozen=True)
class DecisionDrift:
    """The drift section of one decision's report."""

    window: DriftWindow | None
    later: DriftWindow | None
    """When no window was recorded before the decision: the latest one, recorded after."""
    firing: tuple[AlertRow, ...]


@dataclass(frozen=True)
class ModelDrift:
    """The drift page of a model (or of one of its versions)."""

    model: str
    version: str
    windows: tuple[DriftWindow, ...]
    history: tuple[DriftWindow, ...]
    alerts: tuple[AlertRow, ...]
    firing_count: int = field(default=0)


def _feature(data: Mapping[str, Any]) -> FeatureRow:
    return FeatureRow(
        name=str(data.get("name", "")),
        kind=str(data.get("kind", "")),
        psi=_number(data.get("psi")),
        js=_number(data.get("js")),
        ks=_number(data.get("ks")),
        wasserstein=_number(data.get("wasserstein")),
        cramers_v=_number(data.get("cramers_v")),
        p_adjusted=_number(data.get("p_adjusted")),
        missing_share=_number(data.get("missing_share")),
        drifted=data.get("drifted") is True,
        reasons=tuple(str(r) for r in data.get("reasons") or ()),
    )


def _ranked(features: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drifted features first, then by PSI, highest first."""
    return sorted(
        features,
        key=lambda f: (f.get("drifted") is not True, -(_number(f.get("psi")) or 0.0)),
    )


def _plot(data: Mapping[str, Any], ident: str) -> Plot | None:
    labels = [str(x) for x in data.get("labels") or ()]
    reference = [_number(x) or 0.0 for x in data.get("reference") or ()]
    current = [_number(x) or 0.0 for x in data.get("current") or ()]
    name = str(data.get("name", ""))
    try:
        plot = distribution_plot(name, labels, reference, current, kind=str(data.get("kind")))
    except ValueError:
        return None  # shares that do not match the bins: the table still shows the numbers
    return Plot(plot, ident)


def _thresholds(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    config = body.get("thresholds") or {}
    out = [
        (k, f"{v:g}")
        for k, v in sorted((config.get("thresholds") or {}).items())
        if _number(v) is not None
    ]
    for key in ("alpha", "min_rows"):
        if key in config:
            out.append((key, str(config[key])))
    return tuple(out)


def _shares(prediction: Mapping[str, Any]) -> Shares:
    labels = [str(x) for x in prediction.get("labels") or ()]
    reference = list(prediction.get("reference") or ())
    current = list(prediction.get("current") or ())
    return Shares(
        psi=_number(prediction.get("psi")),
        js=_number(prediction.get("js")),
        p_value=_number(prediction.get("chi2_p")),
        rows=tuple(
            (
                label,
                (_number(reference[i]) or 0.0) if i < len(reference) else 0.0,
                _number(current[i]) if i < len(current) else None,
            )
            for i, label in enumerate(labels)
        ),
    )


def read_window(record: Record, ident: str, *, plots: bool = True) -> DriftWindow:
    """The view of a DRIFT record; `ident` prefixes its charts' element ids."""
    base = DriftWindow(
        record_id=record.record_id,
        leaf_index=record.leaf_index,
        recorded_at=_when(record),
        model=record.model_name,
        version=record.model_version,
    )
    try:
        body = json.loads(record.body_json)
        window, report = body["window"], body["report"]
        features = _ranked(report.get("features") or [])
        drawn = [_plot(f, f"{ident}-{i}") for i, f in enumerate(features[:PLOTTED])]
        return replace(
            base,
            first_leaf=window.get("first_leaf"),
            last_leaf=window.get("last_leaf"),
            first_at=_us_text(window.get("first_recorded_at_us")),
            last_at=_us_text(window.get("last_recorded_at_us")),
            decisions=window.get("decisions"),
            rows=window.get("rows", report.get("rows")),
            spec=", ".join(f"{k} {v}" for k, v in sorted((window.get("spec") or {}).items())),
            judged=report.get("judged") is True,
            feature_count=len(features),
            drifted_count=sum(1 for f in features if f.get("drifted") is True),
            features=tuple(_feature(f) for f in features[:TOP_FEATURES]),
            plots=tuple(p for p in drawn if p is not None) if plots else (),
            prediction=_shares(report["prediction"]) if report.get("prediction") else None,
            scores=_feature(report["scores"]) if report.get("scores") else None,
            # A feature's breaches are its reasons in the table; the rest are said once.
            breaches=tuple(
                _breach(b) for b in report.get("breaches") or () if not b.get("feature")
            ),
            thresholds=_thresholds(body),
            fairness=_fairness(body.get("fairness") or {}),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return replace(
            base,
            error=f"its body is not a drift report this page can read ({type(e).__name__}: {e})",
        )


def _fairness(section: Mapping[str, Any]) -> tuple[FairRow, ...]:
    rows = []
    for name, a in (section.get("attributes") or {}).items():
        if not a.get("monitored"):
            rows.append(FairRow(str(name), str(a.get("reason", "not monitored")), False))
            continue
        deploy = a.get("deploy") or {}
        then = deploy.get("groups") or {}
        outcomes = "equalized_odds_difference" in a
        key = "equalized_odds_difference" if outcomes else "demographic_parity_ratio"
        value, before = _number(a.get(key)), _number(deploy.get(key))
        shown = "n/a" if value is None else f"{value:.3f}"
        at_deploy = "" if before is None else f" ({before:.3f} at deploy)"
        groups = tuple(
            (
                str(g),
                v.get("count"),
                _number(v.get("selection_rate")),
                _number((then.get(g) or {}).get("selection_rate")),
                v.get("small") is True,
            )
            for g, v in (a.get("groups") or {}).items()
        )
        note = f"{key.replace('_', ' ')} {shown}{at_deploy}"
        rows.append(FairRow(str(name), note, a.get("breached") is True, groups))
    return tuple(rows)


def _breach(b: Mapping[str, Any]) -> str:
    what = f"{b.get('feature')} " if b.get("feature") else ""
    value, threshold = _number(b.get("value")), _number(b.get("threshold"))
    shown = f"{value:.3g} >= {threshold:g}" if value is not None and threshold is not None else ""
    return (
        f"{str(b.get('rule', '')).replace('_', ' ')}: {what}{b.get('metric', '')} {shown}".strip()
    )


def alert_row(
    rec: Record, body: Mapping[str, Any], ack: tuple[Record, Mapping[str, Any]] | None
) -> AlertRow:
    row = AlertRow(
        record_id=rec.record_id,
        leaf_index=rec.leaf_index,
        recorded_at=_when(rec),
        version=rec.model_version,
        summary=str(body.get("summary", "")),
        rule=str(body.get("rule", "")),
        feature=str(body.get("feature", "")),
        drift_record_id=str(body.get("drift_record_id", "")),
        acknowledged=ack is not None,
    )
    if ack is None:
        return row
    ack_rec, ack_body = ack
    return replace(
        row,
        ack_by=str(ack_body.get("by") or ack_rec.actor),
        ack_at=_when(ack_rec),
        ack_note=str(ack_body.get("note", "")),
        ack_record_id=ack_rec.record_id,
    )
