"""The monitor's core: follow the ledger, evaluate windows, record what it finds.

`Monitor.step()` reads the next page of records (QueryRecords from
`next_leaf`, every kind, one cursor). A PREDICTION joins each window its model
version's `[[monitor.window]]` configures (mrm.monitor.windows: tumbling or
rolling, rows or seconds, judged on the ledger's order and times); each window
has its own buffer and position, and when one is due it is compared with the
version's reference profile (mrm.drift). An OUTCOME is joined to the label its
decision predicted and, every `min_rows` joined outcomes, live accuracy,
precision, recall and F1 are compared with the deploy-time metrics
(mrm.monitor.live). With `[fairness]` at deploy, both kinds of window also
measure fairness per sensitive attribute that is a model input (mrm.drift.fairness:
demographic parity over decisions, equalized odds over outcomes) in the DRIFT
body's `fairness` section, and a breach of a fairness gate is a problem of rule
"fairness" and the attribute. Either way the window's DRIFT record and an ALERT record
per new problem (mrm.monitor.problems: the breaches of one rule and feature,
grouped) are appended in one ledger batch; only then are notifications
submitted: an alert is a ledger record first. An alert is per problem (model,
version, rule, feature), not per window: while it is unacknowledged, the same
problem seen by another of the version's windows is not raised again.

Ids are derived (mrm.monitor.ids), so after a crash the same window is
evaluated into the same records and the ledger reports duplicates. A version
with several windows names the window in its DRIFT ids (`rows=500`,
`seconds=3600/step=600`: the spec, so reordering the configuration changes
nothing), and so in its ALERT ids, which derive from the DRIFT id; a version
with one window keeps the ids monitors that judged only one window wrote.
`resume()` rebuilds everything from the ledger: per version and window spec
(the DRIFT body's `window.spec`), what its latest DRIFT record covered; the
alerts still firing; and the leaf to read from, which is the least any window
of any version may still need rather than the ledger's first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mrm.client.errors import NotFound
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.drift.compare import Breach, DriftReport, compare
from mrm.drift.config import MonitorConfig, WindowSpec
from mrm.drift.decisions import decode, gather_decoded
from mrm.drift.fairness import body_groups, decision_fairness, outcome_fairness
from mrm.drift.profile import ReferenceProfile
from mrm.kernel.schema import InputSchema
from mrm.monitor.ids import derived_uuid7
from mrm.monitor.live import (
    OutcomeWindow,
    Predictions,
    deploy_metrics,
    outcome_of,
    predicted_label,
    snapshot_of,
)
from mrm.monitor.notify import acknowledgement
from mrm.monitor.problems import AlertKey, alert_key, problems
from mrm.monitor.windows import Entry, WindowBuffer
from mrm.v1 import ledger_pb2, registry_pb2

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model, version)
WindowKey = tuple[str, str, WindowSpec]  # (model, version, one of its windows)
Notify = Callable[[str, dict[str, Any]], None]
Notification = tuple[str, dict[str, Any]]

PREDICTION = ledger_pb2.RECORD_KIND_PREDICTION
OUTCOME = ledger_pb2.RECORD_KIND_OUTCOME


@dataclass
class Reference:
    profile: ReferenceProfile
    schema: InputSchema
    config: MonitorConfig
    snapshot: dict[str, Any] = field(default_factory=dict)
    """The deploy-time metrics live ones are compared with."""

    @property
    def windows(self) -> tuple[WindowSpec, ...]:
        """Every configured window, each judged on its own (no two are the same)."""
        return self.config.windows


@dataclass
class Monitor:
    ledger: LedgerClient
    registry: RegistryClient
    notify: Notify | None = None
    page_size: int = 1000
    report_link: str = ""
    """Where a person reads the drift of a model: `{model}` and `{version}` are replaced."""
    resubmit_acknowledgements: timedelta = timedelta(days=1)
    """How far back `resume()` re-submits acknowledgements (firing alerts: all)."""
    next_leaf: int = 0
    done_until: dict[WindowKey, int] = field(default_factory=dict)
    """Per version and window, the last leaf its latest recorded window covered."""
    window_start: dict[WindowKey, int] = field(default_factory=dict)
    """Per version and window, the first leaf of its latest recorded window."""
    window_end_us: dict[WindowKey, int] = field(default_factory=dict)
    """Per version and window, when its latest recorded window closed."""
    outcomes_done: dict[Key, int] = field(default_factory=dict)
    """Per version, the last leaf a recorded outcomes window covered."""
    firing: dict[AlertKey, str] = field(default_factory=dict)
    """Alert key (model, version, rule, feature) -> the firing ALERT's record id."""
    buffers: dict[WindowKey, WindowBuffer] = field(default_factory=dict)
    outcome_windows: dict[Key, OutcomeWindow] = field(default_factory=dict)
    references: dict[Key, Reference | None] = field(default_factory=dict)
    predictions: Predictions = field(default_factory=Predictions)
    evaluated: int = 0
    processed: int = 0
    latest: dict[Key, DriftReport] = field(default_factory=dict)
    """Per version, the report of its latest evaluated window, whichever (for /metrics)."""
    live: dict[Key, dict[str, float]] = field(default_factory=dict)
    """Per version, the metrics of its latest outcomes window (for /metrics)."""

    # -- position ----------------------------------------------------------------

    def resume(self) -> list[Notification]:
        """Where to go on from, as the ledger says: nothing else is remembered.

        Returns the notifications to submit again (every firing alert, and recent
        acknowledgements): one may have been recorded and never sent. The
        notifier's outbox drops what was sent already."""
        self.done_until.clear()
        self.window_start.clear()
        self.window_end_us.clear()
        self.outcomes_done.clear()
        self.firing.clear()
        self.buffers.clear()
        self.outcome_windows.clear()
        for rec in self.ledger.query(kind="DRIFT", newest_first=True):
            key = (rec.model_name, rec.model_version)
            window = orjson.loads(rec.body_json)["window"]
            if window.get("source") == "outcomes":
                self.outcomes_done.setdefault(key, int(window["last_leaf"]))
                continue
            spec = self._spec_of(key, window.get("spec"))
            if spec is None:
                continue
            wkey = (*key, spec)
            if wkey not in self.done_until:
                self.done_until[wkey] = int(window["last_leaf"])
                self.window_start[wkey] = int(window["first_leaf"])
                closed = window.get("closed_at_us", window["last_recorded_at_us"])
                self.window_end_us[wkey] = int(closed)
        pending = self._alerts()
        self.next_leaf = self._start_leaf()
        return pending

    def _spec_of(self, key: Key, recorded: object) -> WindowSpec | None:
        """The window a DRIFT body's `window.spec` names; a body without one was
        written when only the first configured window was judged."""
        if recorded is None:
            ref = self._reference(key)
            return ref.windows[0] if ref is not None else None
        try:
            return WindowSpec.from_table("window.spec", recorded)
        except ValueError:
            log.warning("%s %s: a DRIFT record names no window: %r", *key, recorded)
            return None

    def _alerts(self) -> list[Notification]:
        raised: dict[str, tuple[AlertKey, dict[str, Any]]] = {}
        acks: dict[str, ledger_pb2.Record] = {}
        for rec in self.ledger.query(kind="ALERT"):
            body = orjson.loads(rec.body_json)
            if body.get("state") == "acknowledged":
                acks.setdefault(str(body.get("alert_record_id", "")), rec)
            else:
                raised[rec.record_id] = (alert_key(rec.model_name, rec.model_version, body), body)
        pending: list[Notification] = []
        since = datetime.now(UTC) - self.resubmit_acknowledgements
        for record_id, (akey, body) in raised.items():
            ack = acks.get(record_id)
            if ack is None:
                self.firing[akey] = record_id
                pending.append((record_id, {"alert_id": record_id, **body}))
            elif ack.recorded_at.ToDatetime(tzinfo=UTC) >= since:
                pending.append((record_id, acknowledgement_of(record_id, body, ack)))
        return pending

    def _start_leaf(self) -> int:
        """The least leaf any window of a version may still need: after its latest
        recorded window (from its first decision in it, for a rolling one), or the
        version's first record of the kind."""
        # The ledger's end first: a version registered after this is only in later leaves.
        newest = self.ledger.query_page(
            ledger_pb2.QueryRecordsRequest(newest_first=True, page_size=1)
        ).records
        starts = [newest[0].leaf_index + 1 if newest else 0]
        keys = {wkey[:2] for wkey in self.done_until}
        keys |= set(self.outcomes_done) | set(self._versions())
        for key in sorted(keys):
            ref = self._reference(key)
            if ref is None:
                continue
            for spec in ref.windows:
                wkey = (*key, spec)
                if wkey in self.done_until:
                    done = self.done_until[wkey] + 1
                    starts.append(self.window_start[wkey] if spec.rolling else done)
                else:  # a window not judged yet: it needs the version's first decision
                    starts.extend(self._first_leaf(key, PREDICTION))
                    break
            if key in self.outcomes_done:
                starts.append(self.outcomes_done[key] + 1)
            else:
                starts.extend(self._first_leaf(key, OUTCOME))
        return min(starts)

    def _versions(self) -> Iterable[Key]:
        for model in self.registry.list_models():
            for version in self.registry.list_versions(model.name):
                yield model.name, version.version

    def _first_leaf(self, key: Key, kind: ledger_pb2.RecordKind.ValueType) -> list[int]:
        page = self.ledger.query_page(
            ledger_pb2.QueryRecordsRequest(
                kind=kind, model_name=key[0], model_version=key[1], page_size=1
            )
        )
        return [page.records[0].leaf_index] if page.records else []

    # -- following ---------------------------------------------------------------

    def step(self) -> int:
        """Process one page of new records; how many were read."""
        page = self.ledger.query_page(
            ledger_pb2.QueryRecordsRequest(
                start_leaf_index=self.next_leaf, page_size=self.page_size
            )
        )
        for rec in page.records:
            if rec.kind == PREDICTION:
                self._add_decision(rec)
            elif rec.kind == OUTCOME:
                self._add_outcome(rec)
            self.next_leaf = rec.leaf_index + 1
        self.processed += len(page.records)
        return len(page.records)

    def acknowledged(self, alert_record_id: str) -> None:
        """An acknowledgement was recorded: the next breach of that key alerts again."""
        for akey, rid in list(self.firing.items()):
            if rid == alert_record_id:
                del self.firing[akey]

    def _add_decision(self, rec: ledger_pb2.Record) -> None:
        key = (rec.model_name, rec.model_version)
        ref = self._reference(key)
        if ref is None:
            return
        entry: Entry | None = None
        for spec in ref.windows:
            wkey = (*key, spec)
            replay = rec.leaf_index <= self.done_until.get(wkey, -1)
            start = self.window_start.get(wkey, 0)
            if replay and not (spec.rolling and rec.leaf_index >= start):
                continue  # already in this window's recorded windows, and not in a later one
            if entry is None:
                body = _body(rec)
                us = _us(rec.recorded_at)
                decision = decode(body, ref.schema)  # once: every window reuses it
                rows = decision.rows if decision is not None else 0
                entry = Entry(rec.leaf_index, us, rec.record_id, body, rows, decision)
            if not replay:
                groups = self._groups(entry.body, ref)
                label = (
                    predicted_label(entry.body)
                    if entry.decision is None
                    else _one(entry.decision.labels)  # the same label, already read
                )
                self.predictions.remember(rec.record_id, label, groups)
            buf = self.buffers.get(wkey)
            if buf is None:
                end = self.window_end_us.get(wkey)
                buf = self.buffers[wkey] = WindowBuffer(spec, last_end_us=end)
            if not replay and buf.closes_before(entry.us):
                self._judge_decisions(wkey, ref, buf, buf.take(entry.us))  # it opens the next
            if buf.add(entry, replay=replay):
                self._judge_decisions(wkey, ref, buf, buf.take())

    def _add_outcome(self, rec: ledger_pb2.Record) -> None:
        key = (rec.model_name, rec.model_version)
        if rec.leaf_index <= self.outcomes_done.get(key, -1):
            return
        ref = self._reference(key)
        if ref is None or ref.snapshot.get("task") == "regression":
            return  # live regression metrics are not judged: no labels to compare
        found = outcome_of(_body(rec))
        decision, truth, predicted, groups = None, None, None, None
        if found is not None:
            decision, truth = found
            predicted, groups = self._predicted(decision, key, ref)
        win = self.outcome_windows.setdefault(key, OutcomeWindow())
        win.add(rec.leaf_index, _us(rec.recorded_at), decision, truth, predicted, groups)
        if win.rows >= ref.config.min_rows:
            self._judge_outcomes(key, ref, win)

    def _predicted(
        self, decision: str, key: Key, ref: Reference
    ) -> tuple[object | None, Mapping[str, str] | None]:
        """The decision's predicted label and sensitive groups (read from the ledger
        when not remembered)."""
        known, label = self.predictions.get(decision)
        if known:
            return label, self.predictions.groups(decision)
        try:
            rec = self.ledger.get_record(decision)
        except NotFound:
            return None, None
        if rec.kind != PREDICTION or (rec.model_name, rec.model_version) != key:
            return None, None
        body = _body(rec)
        return predicted_label(body), self._groups(body, ref)

    @staticmethod
    def _groups(body: Mapping[str, Any], ref: Reference) -> Mapping[str, str] | None:
        fairness = ref.profile.fairness
        return None if fairness is None else body_groups(body, ref.schema, fairness)

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
                snapshot = snapshot_of(version.facts_json, profile.metrics)
                ref = Reference(profile, schema, profile.monitor, snapshot)
            else:
                log.warning("%s %s has no reference profile; it is not monitored", *key)
        except Exception as exc:  # a version the registry cannot give: not monitored
            log.warning("%s %s cannot be monitored: %s", key[0], key[1], exc)
        self.references[key] = ref
        return ref

    # -- judging -------------------------------------------------------------------

    def _judge_decisions(
        self, wkey: WindowKey, ref: Reference, buf: WindowBuffer, entries: list[Entry]
    ) -> None:
        if not entries:
            return
        model, version, spec = wkey
        decisions = gather_decoded(((e.record_id, e.decision) for e in entries), ref.schema)
        report = compare(ref.profile, decisions.window())
        first, last = entries[0], entries[-1]
        window = {
            "first_leaf": first.leaf,
            "last_leaf": last.leaf,
            "first_recorded_at_us": first.us,
            "last_recorded_at_us": last.us,
            "decisions": len(decisions.record_ids),
            "rows": decisions.rows,
            "unreadable": decisions.unreadable,
            "spec": spec.to_json(),
        }
        if spec.rolling and spec.unit == "seconds":
            window["closed_at_us"] = buf.last_end_us  # when the next window is due
        # A rolling window's first leaf may start two windows; the pair is unique.
        parts = (str(first.leaf), str(last.leaf)) if spec.rolling else (str(first.leaf),)
        if len(ref.windows) > 1:  # one window: the ids earlier monitors wrote
            parts = (spec.label, *parts)
        drift_id = derived_uuid7(last.us // 1000, "drift", model, version, *parts)
        body = {"window": window, "report": report.to_json(), "thresholds": ref.config.to_json()}
        breaches = list(report.breaches)
        fairness = ref.profile.fairness
        if fairness is not None:
            fair = decision_fairness(
                fairness,
                decisions.features,
                decisions.predictions,
                judged=report.judged,
                alpha=ref.config.alpha,
            )
            body["fairness"] = fair.to_json()
            breaches += fair.breaches
        top = [{"name": f.name, "psi": f.psi} for f in report.top_features(3)]
        context = {"top_features": top, "examples": decisions.record_ids[-5:]}
        self._record((model, version), drift_id, body, breaches, context)
        self.done_until[wkey] = last.leaf
        self.window_start[wkey] = buf.entries[0].leaf if buf.entries else last.leaf + 1
        self.window_end_us[wkey] = buf.last_end_us if buf.last_end_us is not None else last.us
        self.latest[(model, version)] = report

    def _judge_outcomes(self, key: Key, ref: Reference, win: OutcomeWindow) -> None:
        report = win.judge(ref.snapshot, ref.config)
        live = report.live
        model, version = key
        window = win.to_json()
        drift_id = derived_uuid7(
            win.last_us // 1000, "performance", model, version, str(win.first_leaf)
        )
        deploy = deploy_metrics(ref.snapshot, live)
        body = {
            "window": window,
            "metrics": {"live": live, "deploy": deploy},
            "report": report.to_json(),
            "thresholds": ref.config.to_json(),
        }
        breaches = list(report.breaches)
        fairness = ref.profile.fairness
        if fairness is not None:
            fair = outcome_fairness(
                fairness,
                win.truth,
                win.predicted,
                win.groups,
                judged=report.judged,
                alpha=ref.config.alpha,
            )
            body["fairness"] = fair.to_json()
            breaches += fair.breaches
        context = {"top_features": [], "examples": win.decisions[-5:]}
        self._record(key, drift_id, body, breaches, context, (live, deploy))
        del self.outcome_windows[key]
        self.outcomes_done[key] = win.last_leaf
        self.live[key] = live

    def _record(
        self,
        key: Key,
        drift_id: str,
        drift: dict[str, Any],
        breaches: list[Breach],
        context: Mapping[str, Any],
        metrics: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
    ) -> None:
        """Append the window's DRIFT record and an ALERT per new problem; then notify.
        `metrics` (live, deploy-time) word a performance alert's summary."""
        model, version = key
        ms = int(drift["window"]["last_recorded_at_us"]) // 1000
        link = self.report_link.format(model=model, version=version) if self.report_link else ""
        records = [
            new_record("DRIFT", drift, record_id=drift_id, model_name=model, model_version=version)
        ]
        alerts: list[Notification] = []
        live, deploy = metrics if metrics is not None else (None, None)
        for problem in problems(breaches):
            akey = problem.key(model, version)
            if akey in self.firing:
                continue  # still firing from an earlier window, of any spec: not raised again
            body = {
                "state": "firing",
                **problem.to_json(),
                "summary": problem.summary(live, deploy),
                "model": model,
                "version": version,
                "window": drift["window"],
                "drift_record_id": drift_id,
                **context,
                "link": link,
            }
            alert_id = derived_uuid7(ms, "alert", drift_id, *akey[2:])
            records.append(
                new_record(
                    "ALERT", body, record_id=alert_id, model_name=model, model_version=version
                )
            )
            alerts.append((alert_id, body))
        self.ledger.append(records)  # raises: the follower resumes from the ledger
        for alert_id, body in alerts:
            self.firing[alert_key(model, version, body)] = alert_id
        self.evaluated += 1
        if self.notify is not None:
            for alert_id, body in alerts:
                self.notify(alert_id, {"alert_id": alert_id, **body})


def acknowledgement_of(
    alert_id: str, alert: Mapping[str, Any], ack: ledger_pb2.Record
) -> dict[str, Any]:
    """The notification of an acknowledgement, the same whoever builds it (the
    acknowledging servicer, or a monitor resuming): made of ledger records only."""
    by = str(orjson.loads(ack.body_json).get("by") or ack.actor)
    at = ack.recorded_at.ToDatetime(tzinfo=UTC)
    return acknowledgement({"alert_id": alert_id, **alert}, by, at)


def _body(rec: ledger_pb2.Record) -> dict[str, Any]:
    try:
        body = orjson.loads(rec.body_json)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _us(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def _one(labels: list[Any]) -> object | None:
    """A one-row decision's label, as `predicted_label` reads it; None otherwise."""
    return labels[0] if len(labels) == 1 else None
