"""Each model's figures: inventory, live status and fairness, each with its record id.

Every read is bounded: filtered QueryRecords (by kind, model and time, newest
first) with small pages and a cap, so a page load never scans the whole ledger.
A figure that cannot be read says so (`unavailable`) instead of failing the page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from mrm.client import errors as client_errors
from mrm.client.identity import identity_json
from mrm.client.ledger import Record, kind_value
from mrm.client.proxy import ProxyStatus
from mrm.client.registry import stage_name
from mrm.dashboard.sources import Sources, upstream
from mrm.dashboard.views import (
    NONE,
    Actor,
    Alerts,
    Deploy,
    Drift,
    FairAttribute,
    Fairness,
    LiveFairness,
    Metric,
    ModelFigures,
    Performance,
    Traffic,
    VersionRow,
    body_of,
    when,
)
from mrm.v1 import monitor_pb2, registry_pb2

log = logging.getLogger(__name__)

COUNT_CAP = 2000
"""PREDICTION records counted per figure at most; beyond it the page says "2,000+"."""
MODELS_SHOWN = 200
VERSIONS_SHOWN = 10
ALERTS_COUNTED = 100
DRIFT_LOOKED_AT = 20
DAY = timedelta(hours=24)


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


Live = dict[tuple[str, str], dict[str, Any]]
"""(version, sensitive attribute) -> its latest production figures (LiveFairness's fields)."""


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
        live: Live = {}  # fairness in production, as the DRIFT records read say
        parts = (
            ("versions", self._inventory),
            ("traffic", lambda f: self._traffic(f, now, proxy)),
            ("drift", lambda f: self._drift(f, live)),
            ("alerts", self._alerts),
            ("fairness", lambda f: self._fairness(f, live)),
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

    def _drift(self, fig: ModelFigures, live: Live) -> None:
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
            _live_fairness(live, record, body)

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

    def _fairness(self, fig: ModelFigures, live: Live) -> None:
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
            production = tuple(
                LiveFairness(attr, **values)
                for (version, attr), values in sorted(live.items())
                if version == record.model_version
            )
            fig.fairness = replace(fig.fairness, production=production)


def _live_fairness(into: Live, record: Record, body: Mapping[str, Any]) -> None:
    """Fill in, newest window first, each attribute's latest production figures: the
    selection-rate ratio from decisions, the equalized-odds difference from outcomes."""
    outcomes = _obj(body.get("window")).get("source") == "outcomes"
    for name, a in _obj(_obj(body.get("fairness")).get("attributes")).items():
        if not isinstance(a, dict):
            continue
        got = into.setdefault((record.model_version, str(name)), {})
        if not a.get("monitored"):
            got.setdefault("note", str(a.get("reason") or "not monitored"))
        elif outcomes and "odds_record_id" not in got:
            got["odds_difference"] = _number(a.get("equalized_odds_difference"))
            got["odds_record_id"] = record.record_id
        elif not outcomes and "parity_record_id" not in got:
            got["parity_ratio"] = _number(a.get("demographic_parity_ratio"))
            got["parity_record_id"] = record.record_id


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
