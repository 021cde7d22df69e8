"""What the dashboard shows, as plain data: each figure with the record id it comes
from, and the traffic light at the top. The templates and the JSON endpoints
render these; mrm.dashboard.figures fills them from the public APIs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mrm.client.ledger import Record

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
class LiveFairness:
    """An attribute's latest figures in production (the monitor's DRIFT records)."""

    name: str
    parity_ratio: float | None = None
    parity_record_id: str = ""
    """The window of decisions the ratio is from."""
    odds_difference: float | None = None
    odds_record_id: str = ""
    """The window of outcomes the difference is from."""
    note: str = ""
    """Why it is not monitored, e.g. "not monitored: not a model input"."""


@dataclass(frozen=True)
class Fairness:
    record_id: str
    at: str
    version: str
    passed: bool | None
    failures: tuple[str, ...]
    attributes: tuple[FairAttribute, ...]
    production: tuple[LiveFairness, ...] = ()
    """The same attributes in production, of the same version, where the monitor has them."""

    def live(self, name: str) -> LiveFairness | None:
        return next((p for p in self.production if p.name == name), None)


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
        doc = asdict(self)
        doc["concerns"] = self.concerns
        return doc


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
