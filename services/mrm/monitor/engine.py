"""The monitor's core: follow the ledger, evaluate windows, record what it finds.

`Monitor.step()` reads the next page of PREDICTION records (QueryRecords from
`start_leaf_index`), adds each to its model version's open window and, when a
window is full (`rows`) or over (`seconds`, judged on the decisions' ledger
times), compares it with the version's reference profile (mrm.drift) and
appends, in one ledger batch, the window's DRIFT record and an ALERT record per
newly breached threshold. Only then are notifications submitted: an alert is a
ledger record first.

Ids are derived (mrm.monitor.ids), so after a crash the same window is
evaluated into the same records and the ledger reports duplicates. `resume()`
rebuilds the position from the ledger: per version, the last leaf its latest
DRIFT record covered, and the alerts still firing (no acknowledgement).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.deploy.schema import InputSchema
from mrm.drift.compare import Breach, DriftReport, compare
from mrm.drift.config import MonitorConfig, WindowSpec
from mrm.drift.decisions import DecisionWindow
from mrm.drift.profile import ReferenceProfile
from mrm.monitor.ids import derived_uuid7
from mrm.v1 import ledger_pb2, registry_pb2

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model, version)
Notify = Callable[[str, dict[str, Any]], None]


@dataclass
class Reference:
    profile: ReferenceProfile
    schema: InputSchema
    config: MonitorConfig

    @property
    def window(self) -> WindowSpec:
        return self.config.windows[0]


@dataclass
class OpenWindow:
    decisions: DecisionWindow
    first_leaf: int = -1
    last_leaf: int = -1
    first_us: int = 0
    last_us: int = 0
    last_id: str = ""


@dataclass
class Monitor:
    ledger: LedgerClient
    registry: RegistryClient
    notify: Notify | None = None
    page_size: int = 1000
    report_link: str = ""
    """Where a person reads the drift of a model: `{model}` and `{version}` are replaced."""
    next_leaf: int = 0
    done_until: dict[Key, int] = field(default_factory=dict)
    """Per version, the last leaf a recorded window covered: later windows start after it."""
    firing: dict[tuple[str, ...], str] = field(default_factory=dict)
    """Alert key (model, version, rule, metric, feature) -> the firing ALERT's record id."""
    windows: dict[Key, OpenWindow] = field(default_factory=dict)
    references: dict[Key, Reference | None] = field(default_factory=dict)
    evaluated: int = 0
    processed: int = 0
    latest: dict[Key, DriftReport] = field(default_factory=dict)
    """Per version, the report of its latest evaluated window (for /metrics)."""

    # -- position ----------------------------------------------------------------

    def resume(self) -> None:
        """Where to go on from, as the ledger says: nothing else is remembered."""
        for rec in self.ledger.query(kind="DRIFT", newest_first=True):
            key = (rec.model_name, rec.model_version)
            if key not in self.done_until:
                self.done_until[key] = int(orjson.loads(rec.body_json)["window"]["last_leaf"])
        acknowledged: set[str] = set()
        raised: list[tuple[tuple[str, ...], str]] = []
        for rec in self.ledger.query(kind="ALERT"):
            body = orjson.loads(rec.body_json)
            if body.get("state") == "acknowledged":
                acknowledged.add(str(body.get("alert_record_id", "")))
            else:
                raised.append((_alert_key(rec.model_name, rec.model_version, body), rec.record_id))
        for alert_key, record_id in raised:
            if record_id not in acknowledged:
                self.firing[alert_key] = record_id
        # Windows left open by a stop are rebuilt from their decisions: read from the
        # earliest leaf a version may still need (0 when a version has no window yet).
        self.next_leaf = 0

    # -- following ---------------------------------------------------------------

    def step(self) -> int:
        """Process one page of new PREDICTION records; how many were read."""
        page = self.ledger.query_page(
            ledger_pb2.QueryRecordsRequest(
                kind=ledger_pb2.RECORD_KIND_PREDICTION,
                start_leaf_index=self.next_leaf,
                page_size=self.page_size,
            )
        )
        for rec in page.records:
            self._add(rec)
            self.next_leaf = rec.leaf_index + 1
        self.processed += len(page.records)
        return len(page.records)

    def acknowledged(self, alert_record_id: str) -> None:
        """An acknowledgement was recorded: the next breach of that key alerts again."""
        for akey, rid in list(self.firing.items()):
            if rid == alert_record_id:
                del self.firing[akey]

    def _add(self, rec: ledger_pb2.Record) -> None:
        key = (rec.model_name, rec.model_version)
        if rec.leaf_index <= self.done_until.get(key, -1):
            return  # already in a recorded window
        ref = self._reference(key)
        if ref is None:
            return
        us = rec.recorded_at.seconds * 1_000_000 + rec.recorded_at.nanos // 1000
        win = self.windows.get(key)
        spec = ref.window
        over = win is not None and us - win.first_us >= spec.size * 1_000_000
        if win is not None and spec.unit == "seconds" and win.first_leaf >= 0 and over:
            self._evaluate(key, ref, win)  # this decision opens the next window
            win = None
        if win is None:
            win = self.windows[key] = OpenWindow(DecisionWindow(ref.schema))
        try:
            body = orjson.loads(rec.body_json)
        except orjson.JSONDecodeError:
            body = {}
        win.decisions.add(rec.record_id, body)
        if win.first_leaf < 0:
            win.first_leaf, win.first_us = rec.leaf_index, us
        win.last_leaf, win.last_us, win.last_id = rec.leaf_index, us, rec.record_id
        if spec.unit == "rows" and win.decisions.rows >= spec.size:
            self._evaluate(key, ref, win)

    def _reference(self, key: Key) -> Reference | None:
        if key in self.references:
            return self.references[key]
        ref: Reference | None = None
        try:
            version = self.registry.get_version(*key)
            shas = {a.role: a.sha256 for a in version.artifacts}
            profile_sha = shas.get(registry_pb2.ARTIFACT_ROLE_REFERENCE_PROFILE)
            schema_sha = shas.get(registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA)
            if profile_sha and schema_sha:
                profile = ReferenceProfile.from_json(
                    orjson.loads(self.registry.download(profile_sha))
                )
                schema = InputSchema.from_json(self.registry.download(schema_sha))
                ref = Reference(profile, schema, profile.monitor)
            else:
                log.warning("%s %s has no reference profile; it is not monitored", *key)
        except Exception as exc:  # a version the registry cannot give: not monitored
            log.warning("%s %s cannot be monitored: %s", key[0], key[1], exc)
        self.references[key] = ref
        return ref

    # -- judging -------------------------------------------------------------------

    def _evaluate(self, key: Key, ref: Reference, win: OpenWindow) -> None:
        self.windows.pop(key, None)
        report = compare(ref.profile, win.decisions.window())
        model, version = key
        ms = win.last_us // 1000
        window = {
            "first_leaf": win.first_leaf,
            "last_leaf": win.last_leaf,
            "first_recorded_at_us": win.first_us,
            "last_recorded_at_us": win.last_us,
            "decisions": len(win.decisions.record_ids),
            "rows": win.decisions.rows,
            "unreadable": win.decisions.unreadable,
            "spec": ref.window.to_json(),
        }
        drift_id = derived_uuid7(ms, "drift", model, version, str(win.first_leaf))
        link = self.report_link.format(model=model, version=version) if self.report_link else ""
        records = [
            new_record(
                "DRIFT",
                {"window": window, "report": report.to_json(), "thresholds": ref.config.to_json()},
                record_id=drift_id,
                model_name=model,
                model_version=version,
            )
        ]
        alerts: list[tuple[str, dict[str, Any]]] = []
        top = [{"name": f.name, "psi": f.psi} for f in report.top_features(3)]
        for breach in report.breaches:
            akey = _alert_key(model, version, _breach_json(breach))
            if akey in self.firing:
                continue  # still firing from an earlier window: not raised again
            body = {
                "state": "firing",
                **_breach_json(breach),
                "summary": _summary(breach),
                "model": model,
                "version": version,
                "window": window,
                "drift_record_id": drift_id,
                "top_features": top,
                "examples": win.decisions.record_ids[-5:],
                "link": link,
            }
            alert_id = derived_uuid7(ms, "alert", drift_id, *akey[2:])
            records.append(
                new_record(
                    "ALERT", body, record_id=alert_id, model_name=model, model_version=version
                )
            )
            alerts.append((alert_id, body))
        self.ledger.append(records)  # raises: the window is read again on the next resume
        self.done_until[key] = win.last_leaf
        self.latest[key] = report
        for alert_id, body in alerts:
            self.firing[_alert_key(model, version, body)] = alert_id
        self.evaluated += 1
        if self.notify is not None:
            for alert_id, body in alerts:
                self.notify(alert_id, {"alert_id": alert_id, **body})


def _breach_json(b: Breach) -> dict[str, Any]:
    return {
        "rule": b.rule,
        "metric": b.metric,
        "feature": b.feature or "",
        "value": b.value,
        "threshold": b.threshold,
    }


def _alert_key(model: str, version: str, body: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        model,
        version,
        str(body.get("rule", "")),
        str(body.get("metric", "")),
        str(body.get("feature", "")),
    )


def _summary(b: Breach) -> str:
    what = f"{b.feature} " if b.feature else ""
    return f"{b.rule.replace('_', ' ')}: {what}{b.metric} {b.value:.3g} >= {b.threshold:g}"
