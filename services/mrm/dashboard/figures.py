"""Each model's figures: inventory, live status and fairness, each with its record id.

Every read is bounded: filtered QueryRecords (by kind, model and time, newest
first) with small pages and a cap, so a page load never scans the whole ledger.
A figure that cannot be read says so (`unavailable`) instead of failing the page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mrm.client import errors as client_errors
from mrm.client.identity import identity_json
from mrm.client.ledger import Record, kind_value
from mrm.client.proxy import ProxyStatus
from mrm.client.registry import stage_name
from mrm.dashboard.sources import Sources, upstream
from mrm.v1 import monitor_pb2, registry_pb2

log = logging.getLogger(__name__)

COUNT_CAP = 2000
"""PREDICTION records counted per figure at most; beyond it the page says "2,000+"."""
MODELS_SHOWN = 200
VERSIONS_SHOWN = 10
ALERTS_COUNTED = 100
DRIFT_LOOKED_AT = 20
DAY = timedelta(hours=24)
NONE = "—"


def when(ts: Timestamp | None) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def body_of(record: Record) -> dict[str, Any]:
    try:
        body = json.loads(record.body_json)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class Actor:
    """Who made a change, as the registry verified it."""

    name: str
    verified: bool
    how: str
    """"token tok_…", "oidc from https://…" or "not verified"."""

    @classmethod
    def from_identity(cls, doc: Mapping[str, Any], fallback: str) -> Actor:
        principal = str(doc.get("principal") or fallback or NONE)
        method = str(doc.get("method") or "")
        if not doc or method in ("", "none"):
            return cls(principal, False, "not verified")
        how = method + (f" {doc['token_id']}" if doc.get("token_id") else "")
        if doc.get("issuer"):
            how += f" from {doc['issuer']}"
        return cls(principal, True, how)


@dataclass(frozen=True)
class VersionRow:
    version: str
    stage: str
    registered_at: str
    registered_by: Actor
    record_id: str
    """Its MODEL_INGESTED record."""


@dataclass(frozen=True)
class Deploy:
    record_id: str
    at: str
    version: str
    stage: str
    reason: str
    by: Actor


@dataclass(frozen=True)
class Traffic:
    last_24h: int
    total: int
    capped_24h: bool
    capped_total: bool
    newest_record_id: str
    dropped_24h: int
    """Samples the proxy reported as not delivered (GAP records) in the last 24 h."""
    gap_record_id: str
    proxy_sampled: int | None = None
    proxy_shipped: int | None = None
    proxy_dropped: int | None = None

    def text(self, n: int, capped: bool) -> str:
        return f"{n:,}+" if capped else f"{n:,}"


@dataclass(frozen=True)
class Drift:
    record_id: str
    at: str
    version: str
    drifted: tuple[str, ...]
    features: int


@dataclass(frozen=True)
class Alerts:
    firing: int
    capped: bool
    newest_summary: str
    newest_record_id: str


@dataclass(frozen=True)
class Metric:
    name: str
    live: float | None
    deploy: float | None


@dataclass(frozen=True)
class Performance:
    record_id: str
    at: str
    version: str
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class FairAttribute:
    name: str
    parity_ratio: float | None
    odds_difference: float | None


@dataclass(frozen=True)
class Fairness:
    record_id: str
    at: str
    version: str
    passed: bool | None
    failures: tuple[str, ...]
    attributes: tuple[FairAttribute, ...]


@dataclass
class ModelFigures:
    name: str
    description: str
    production_version: str
    owner: str = NONE
    risk_tier: str = NONE
    card_record_id: str = ""
    versions: list[VersionRow] = field(default_factory=list)
    last_deploy: Deploy | None = None
    traffic: Traffic | None = None
    drift: Drift | None = None
    alerts: Alerts | None = None
    performance: Performance | None = None
    fairness: Fairness | None = None
    unavailable: list[str] = field(default_factory=list)
    """Figures that could not be read, in words ("alerts: the monitor is unavailable")."""

    @property
    def in_production(self) -> bool:
        return bool(self.production_version)

    @property
    def concerns(self) -> list[str]:
        """Why this model needs attention, in plain words (empty: under control)."""
        said = []
        if self.alerts is not None and self.alerts.firing:
            n = self.alerts.firing
            said.append(f"{n}{'+' if self.alerts.capped else ''} open alert{'s' * (n != 1)}")
        if self.drift is not None and self.drift.drifted:
            said.append("its inputs have shifted (" + ", ".join(self.drift.drifted[:3]) + ")")
        if self.fairness is not None and self.fairness.passed is False:
            said.append("it failed its fairness check")
        if self.traffic is not None and self.traffic.dropped_24h:
            said.append(f"{self.traffic.dropped_24h:,} decisions went unrecorded in 24 h")
        if self.unavailable and self.in_production:
            said.append("some of its monitoring could not be read")
        return said

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        doc = asdict(self)
        doc["concerns"] = self.concerns
        return doc


def _card(version: registry_pb2.ModelVersion) -> tuple[str, str]:
    """Owner and risk tier from the version's model card facts ([card] in mrm.toml)."""
    try:
        facts = json.loads(version.facts_json or "{}")
    except ValueError:
        return NONE, NONE
    card = facts.get("card") if isinstance(facts, dict) else None
    if not isinstance(card, dict):
        card = facts if isinstance(facts, dict) else {}
    owner, tier = card.get("owner"), card.get("risk_tier")
    return (str(owner) if owner else NONE, str(tier) if tier else NONE)


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Gatherer:
    """Reads the figures of every model (or one) through `sources`."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def models(self, now: datetime | None = None) -> list[ModelFigures]:
        with upstream("registry"):
            listed = list(islice(self.sources.registry.list_models(), MODELS_SHOWN))
        proxy = self._proxy_status()
        moment = now or datetime.now(UTC)
        return [self._figures(m, moment, proxy) for m in listed]

    def model(self, name: str, now: datetime | None = None) -> ModelFigures:
        with upstream("registry"):
            found = self.sources.registry.get_model(name)
        return self._figures(found, now or datetime.now(UTC), self._proxy_status())

    def _proxy_status(self) -> ProxyStatus | None:
        try:
            return self.sources.proxy().status()
        except client_errors.MrmRpcError as e:
            log.info("the proxy's status is unavailable: %s", e.summary())
            return None

    def _figures(
        self, model: registry_pb2.Model, now: datetime, proxy: ProxyStatus | None
    ) -> ModelFigures:
        fig = ModelFigures(model.name, model.description, model.production_version)
        parts = (
            ("versions", self._inventory),
            ("traffic", lambda f: self._traffic(f, now, proxy)),
            ("drift", self._drift),
            ("alerts", self._alerts),
            ("fairness", self._fairness),
        )
        for what, read in parts:
            try:
                read(fig)
            except client_errors.MrmRpcError as e:
                fig.unavailable.append(f"{what}: {e.summary()}")
        return fig

    def _inventory(self, fig: ModelFigures) -> None:
        registry = self.sources.registry
        versions = list(registry.list_versions(fig.name))
        versions.sort(key=lambda v: v.create_time.ToMicroseconds(), reverse=True)
        fig.versions = [
            VersionRow(
                v.version,
                stage_name(v.stage),
                when(v.create_time),
                Actor.from_identity(identity_json(v.created_by_identity), v.created_by),
                v.ingested_record_id,
            )
            for v in versions[:VERSIONS_SHOWN]
        ]
        carded = next((v for v in versions if v.version == fig.production_version), None)
        carded = carded or (versions[0] if versions else None)
        if carded is not None:
            fig.owner, fig.risk_tier = _card(carded)
            fig.card_record_id = carded.ingested_record_id
        changes = registry.stage_changes(fig.name)
        if changes:
            c = max(changes, key=lambda c: c.change_time.ToMicroseconds())
            fig.last_deploy = Deploy(
                c.record_id,
                when(c.change_time),
                c.version,
                stage_name(c.stage),
                c.reason,
                Actor.from_identity(identity_json(c.identity), c.actor),
            )

    def _count(self, name: str, since: datetime | None) -> tuple[int, bool, str]:
        n, newest = 0, ""
        pages = self.sources.ledger.query_pages(
            kind="PREDICTION",
            model_name=name,
            since=since,
            newest_first=True,
            page_size=min(COUNT_CAP, 1000),
        )
        for page in pages:
            if not newest and page:
                newest = page[0].record_id
            n += len(page)
            if n >= COUNT_CAP:
                return COUNT_CAP, True, newest
        return n, False, newest

    def _traffic(self, fig: ModelFigures, now: datetime, proxy: ProxyStatus | None) -> None:
        day, capped_day, newest = self._count(fig.name, now - DAY)
        total, capped_total, newest_ever = self._count(fig.name, None)
        gaps = list(
            islice(
                self.sources.ledger.query(
                    kind="GAP",
                    model_name=fig.name,
                    since=now - DAY,
                    newest_first=True,
                    page_size=100,
                ),
                100,
            )
        )
        dropped = sum(int(_number(body_of(g).get("dropped")) or 0) for g in gaps)
        served = [m for m in proxy.models if m.name == fig.name] if proxy is not None else []
        fig.traffic = Traffic(
            day,
            total,
            capped_day,
            capped_total,
            newest or newest_ever,
            dropped,
            gaps[0].record_id if gaps else "",
            sum(m.counters.sampled for m in served) if served else None,
            sum(m.counters.shipped for m in served) if served else None,
            sum(m.counters.dropped for m in served) if served else None,
        )

    def _drift(self, fig: ModelFigures) -> None:
        windows = self.sources.ledger.query(
            kind="DRIFT", model_name=fig.name, newest_first=True, page_size=DRIFT_LOOKED_AT
        )
        for record in islice(windows, DRIFT_LOOKED_AT):
            body = body_of(record)
            window = _obj(body.get("window"))
            if window.get("source") == "outcomes":
                if fig.performance is None:
                    fig.performance = _performance(record, body)
            elif fig.drift is None:
                fig.drift = _drift(record, body)
            if fig.drift is not None and fig.performance is not None:
                return

    def _alerts(self, fig: ModelFigures) -> None:
        try:
            firing = list(
                islice(
                    self.sources.monitor().alerts(
                        model_name=fig.name,
                        state=monitor_pb2.ALERT_STATE_FIRING,
                        page_size=ALERTS_COUNTED,
                    ),
                    ALERTS_COUNTED,
                )
            )
        except client_errors.MrmRpcError as e:
            fig.unavailable.append(f"alerts: the monitor did not answer ({e.summary()})")
            return
        fig.alerts = Alerts(
            len(firing),
            len(firing) >= ALERTS_COUNTED,
            firing[0].summary if firing else "",
            firing[0].record_id if firing else "",
        )

    def _fairness(self, fig: ModelFigures) -> None:
        try:
            kind = kind_value("FAIRNESS_SNAPSHOT")
        except ValueError:
            return  # a ledger without the kind: nothing was ever assessed
        newest = self.sources.ledger.query(
            kind=kind, model_name=fig.name, newest_first=True, page_size=1
        )
        record = next(newest, None)
        if record is not None:
            fig.fairness = _fairness(record, body_of(record))


def _drift(record: Record, body: Mapping[str, Any]) -> Drift:
    report = _obj(body.get("report"))
    features = [f for f in report.get("features") or [] if isinstance(f, dict)]
    drifted = tuple(str(f.get("name")) for f in features if f.get("drifted") is True)
    return Drift(
        record.record_id, when(record.recorded_at), record.model_version, drifted, len(features)
    )


def _performance(record: Record, body: Mapping[str, Any]) -> Performance:
    metrics = _obj(body.get("metrics"))
    live = _obj(metrics.get("live"))
    deploy = _obj(metrics.get("deploy"))
    names = sorted(set(live) | set(deploy))
    return Performance(
        record.record_id,
        when(record.recorded_at),
        record.model_version,
        tuple(Metric(n, _number(live.get(n)), _number(deploy.get(n))) for n in names),
    )


def _fairness(record: Record, body: Mapping[str, Any]) -> Fairness:
    attributes = _obj(body.get("attributes"))
    rows = tuple(
        FairAttribute(
            str(name),
            _number(values.get("demographic_parity_ratio")),
            _number(values.get("equalized_odds_difference")),
        )
        for name, values in sorted(attributes.items())
        if isinstance(values, dict)
    )
    passed = body.get("passed")
    failures: Sequence[object] = body.get("failures") or []
    return Fairness(
        record.record_id,
        when(record.recorded_at),
        record.model_version,
        passed if isinstance(passed, bool) else None,
        tuple(str(f) for f in failures) if isinstance(failures, list) else (),
        rows,
    )


@dataclass(frozen=True)
class Summary:
    """The traffic light at the top, in plain words."""

    level: str
    """"green", "amber" (something needs attention) or "grey" (nothing in production)."""
    headline: str
    details: tuple[tuple[str, str], ...]
    """(model, its concerns in one sentence)."""


def summarize(models: Sequence[ModelFigures]) -> Summary:
    live = [m for m in models if m.in_production]
    flagged = tuple((m.name, "; ".join(m.concerns)) for m in models if m.concerns)
    n = len(live)
    in_prod = f"{n} model{'s' * (n != 1)} in production"
    if flagged:
        k = len(flagged)
        return Summary("amber", f"{in_prod}; {k} need{'s' * (k == 1)} attention", flagged)
    if not live:
        return Summary("grey", "No model is in production yet", ())
    return Summary("green", f"{in_prod}; all under control", ())
