"""What the monitor recorded about a model version's drift, read back from the ledger.

The monitor appends one DRIFT record per evaluated window (its body: `window`,
`report` as mrm.drift.compare.DriftReport.to_json(), `thresholds`) and ALERT
records (`state` "firing", or "acknowledged" naming the firing one in
`alert_record_id`). This module reads those bodies as JSON, through the ledger
client the Explain service already holds, into views the templates draw.

A decision's report shows the latest window recorded before the decision (the
drift its model was known to have when it decided); the model's drift page
shows the latest windows. A body that cannot be read is shown as such rather
than failing the whole page: the record is still evidence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mrm.client.ledger import Record
from mrm.client.naming import MODEL_NAME, SEMVER
from mrm.core.errors import InvalidArgument, NotFound
from mrm.explain.distribution_plot import DistributionPlot, distribution_plot
from mrm.explain.evidence import Evidence, upstream
from mrm.tlog.leaf import format_timestamp

TOP_FEATURES = 10
PLOTTED = 3
ALERTS_SHOWN = 100
WINDOWS_LISTED = 20
VERSIONS_SHOWN = 5
_SCAN = 500  # DRIFT records looked at to find a model's versions with a window
MAX_NAME = 63


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
    out = [(k, f"{v:g}") for k, v in sorted((config.get("thresholds") or {}).items())]
    for key in ("alpha", "min_rows"):
        if key in config:
            out.append((key, str(config[key])))
    return tuple(out)


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
        window = body["window"]
        report = body["report"]
        features = _ranked(report.get("features") or [])
        prediction = report.get("prediction")
        shares = None
        if prediction:
            current = list(prediction.get("current") or [])
            shares = Shares(
                psi=_number(prediction.get("psi")),
                js=_number(prediction.get("js")),
                p_value=_number(prediction.get("chi2_p")),
                rows=tuple(
                    (
                        str(label),
                        _number(ref) or 0.0,
                        _number(current[i]) if i < len(current) else None,
                    )
                    for i, (label, ref) in enumerate(
                        zip(
                            prediction.get("labels") or (),
                            prediction.get("reference") or (),
                            strict=False,
                        )
                    )
                ),
            )
        drawn = (
            [_plot(f, f"{ident}-{i}") for i, f in enumerate(features[:PLOTTED])] if plots else []
        )
        spec = window.get("spec") or {}
        return DriftWindow(
            record_id=base.record_id,
            leaf_index=base.leaf_index,
            recorded_at=base.recorded_at,
            model=base.model,
            version=base.version,
            first_leaf=window.get("first_leaf"),
            last_leaf=window.get("last_leaf"),
            first_at=_us_text(window.get("first_recorded_at_us")),
            last_at=_us_text(window.get("last_recorded_at_us")),
            decisions=window.get("decisions"),
            rows=window.get("rows", report.get("rows")),
            spec=", ".join(f"{k} {v}" for k, v in sorted(spec.items())),
            judged=report.get("judged") is True,
            feature_count=len(features),
            drifted_count=sum(1 for f in features if f.get("drifted") is True),
            features=tuple(_feature(f) for f in features[:TOP_FEATURES]),
            plots=tuple(p for p in drawn if p is not None),
            prediction=shares,
            scores=_feature(report["scores"]) if report.get("scores") else None,
            # A feature's breaches are its reasons in the table; the rest are said once.
            breaches=tuple(
                _breach(b) for b in report.get("breaches") or () if not b.get("feature")
            ),
            thresholds=_thresholds(body),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return DriftWindow(
            record_id=base.record_id,
            leaf_index=base.leaf_index,
            recorded_at=base.recorded_at,
            model=base.model,
            version=base.version,
            error=f"its body is not a drift report this page can read ({type(e).__name__}: {e})",
        )


def _breach(b: Mapping[str, Any]) -> str:
    what = f"{b.get('feature')} " if b.get("feature") else ""
    value, threshold = _number(b.get("value")), _number(b.get("threshold"))
    shown = f"{value:.3g} >= {threshold:g}" if value is not None and threshold is not None else ""
    return (
        f"{str(b.get('rule', '')).replace('_', ' ')}: {what}{b.get('metric', '')} {shown}".strip()
    )


def valid_model(name: str) -> str:
    """The drift page's model name, or InvalidArgument (400) saying what is wrong."""
    if len(name) > MAX_NAME:
        raise InvalidArgument("model", f"is {len(name)} characters long (at most {MAX_NAME})")
    if not name.isprintable():
        raise InvalidArgument("model", "contains a non-printable character")
    if not MODEL_NAME.fullmatch(name):
        raise InvalidArgument(
            "model", f"{name!r} is not a model name (lowercase letters, digits and '-')"
        )
    return name


def valid_version(version: str) -> str:
    if len(version) > 64 or not SEMVER.fullmatch(version):
        raise InvalidArgument("version", f"{version[:64]!r} is not semver (want MAJOR.MINOR.PATCH)")
    return version


class DriftReader:
    """Reads DRIFT and ALERT records for the reports."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence

    def _records(self, **q: Any) -> Iterator[Record]:
        with upstream("ledger"):
            yield from self.evidence.ledger.query(**q)

    def for_decision(self, prediction: Record) -> DecisionDrift:
        """The latest window of the decision's version recorded before the decision."""
        model, version = prediction.model_name, prediction.model_version
        ts = prediction.recorded_at
        decided = datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1000)
        window = later = None
        # `until` is exclusive and a DRIFT record may share the decision's microsecond:
        # the leaf index, not the clock, says which came first.
        for rec in self._records(
            kind="DRIFT",
            model_name=model,
            model_version=version,
            until=decided + timedelta(microseconds=1),
            newest_first=True,
            page_size=10,
        ):
            if rec.leaf_index < prediction.leaf_index:
                window = read_window(rec, "drift-decision")
                break
        if window is None:
            newest = self.evidence.latest(kind="DRIFT", model_name=model, model_version=version)
            if newest is not None:
                later = read_window(newest, "drift-later", plots=False)
        alerts, _ = self.alerts(model, version)
        return DecisionDrift(window, later, tuple(a for a in alerts if not a.acknowledged))

    def alerts(self, model: str, version: str = "") -> tuple[list[AlertRow], int]:
        """The raised alerts, newest first (at most ALERTS_SHOWN), with their
        acknowledgements; and how many are still firing in all."""
        raised: list[tuple[Record, dict[str, Any]]] = []
        acks: dict[str, tuple[Record, dict[str, Any]]] = {}
        q: dict[str, Any] = {"kind": "ALERT", "model_name": model, "newest_first": True}
        if version:
            q["model_version"] = version
        for rec in self._records(**q):
            try:
                body = json.loads(rec.body_json)
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            if body.get("state") == "acknowledged":
                acks.setdefault(str(body.get("alert_record_id", "")), (rec, body))
            elif body.get("state") == "firing":
                raised.append((rec, body))
        rows = [_alert(rec, body, acks.get(rec.record_id)) for rec, body in raised]
        firing = sum(1 for a in rows if not a.acknowledged)
        rows.sort(key=lambda a: a.acknowledged)  # firing first, each newest first
        return rows[:ALERTS_SHOWN], firing

    def for_model(self, model: str, version: str = "") -> ModelDrift:
        """The model's latest window per version (or of `version`), its recent windows
        and its alerts. NotFound for a model (or version) the registry does not know."""
        try:
            with upstream("registry"):
                self.evidence.registry.get_model(model)
        except NotFound:
            raise NotFound(f"no model named {model!r} is registered") from None
        if version:
            try:
                with upstream("registry"):
                    self.evidence.registry.get_version(model, version)
            except NotFound:
                raise NotFound(f"model {model!r} has no version {version}") from None
        q: dict[str, Any] = {"kind": "DRIFT", "model_name": model, "newest_first": True}
        if version:
            q["model_version"] = version
        latest: dict[str, Record] = {}
        history: list[DriftWindow] = []
        for i, rec in enumerate(self._records(**q)):
            if i >= _SCAN:
                break
            if len(history) < WINDOWS_LISTED:
                history.append(read_window(rec, f"drift-h{i}", plots=False))
            if rec.model_version not in latest and len(latest) < VERSIONS_SHOWN:
                latest[rec.model_version] = rec
        windows = tuple(read_window(rec, f"drift-v{i}") for i, rec in enumerate(latest.values()))
        alerts, firing = self.alerts(model, version)
        return ModelDrift(model, version, windows, tuple(history), tuple(alerts), firing)


def _alert(
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
