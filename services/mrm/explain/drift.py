"""What the monitor recorded about a model's drift, read from the ledger for the reports.

Reads DRIFT and ALERT records through the ledger client the Explain service
already holds (mrm.explain.drift_view turns their bodies into views). A
decision's report shows the latest window recorded before the decision (the
drift its model was known to have when it decided; the leaf index says which
came first); a model's drift page shows its latest windows and its alerts.
A version may configure several windows (say 500 rows and a rolling hour),
whose DRIFT records interleave: the page shows the latest of each spec (the
body's `window.spec`) per version, so a frequent window does not hide a slow one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

from mrm.client.ledger import Record, RecordQuery
from mrm.core.errors import InvalidArgument, NotFound
from mrm.explain.drift_view import (
    AlertRow,
    DecisionDrift,
    DriftWindow,
    ModelDrift,
    alert_row,
    read_window,
)
from mrm.explain.evidence import Evidence, upstream
from mrm.kernel.names import MODEL_NAME, SEMVER

ALERTS_SHOWN = 100
WINDOWS_LISTED = 20
VERSIONS_SHOWN = 5
_SCAN = 500  # DRIFT records looked at to find a model's versions with a window
MAX_NAME = 63


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

    def _records(self, **q: Unpack[RecordQuery]) -> Iterator[Record]:
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
        q: RecordQuery = {"kind": "ALERT", "model_name": model, "newest_first": True}
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
        rows = [alert_row(rec, body, acks.get(rec.record_id)) for rec, body in raised]
        firing = sum(1 for a in rows if not a.acknowledged)
        rows.sort(key=lambda a: a.acknowledged)  # firing first, each newest first
        return rows[:ALERTS_SHOWN], firing

    def for_model(self, model: str, version: str = "") -> ModelDrift:
        """The model's latest window per version (or of `version`) and window spec, its
        recent windows and its alerts. NotFound for a model (or version) the registry
        does not know."""
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
        q = RecordQuery(kind="DRIFT", model_name=model, newest_first=True)
        if version:
            q["model_version"] = version
        latest: dict[tuple[str, str], Record] = {}
        versions: set[str] = set()
        history: list[DriftWindow] = []
        for i, rec in enumerate(self._records(**q)):
            if i >= _SCAN:
                break
            if len(history) < WINDOWS_LISTED:
                history.append(read_window(rec, f"drift-h{i}", plots=False))
            key = (rec.model_version, _window_kind(rec))
            if key in latest or (
                rec.model_version not in versions and len(versions) >= VERSIONS_SHOWN
            ):
                continue
            versions.add(rec.model_version)
            latest[key] = rec
        windows = tuple(read_window(rec, f"drift-v{i}") for i, rec in enumerate(latest.values()))
        alerts, firing = self.alerts(model, version)
        return ModelDrift(model, version, windows, tuple(history), tuple(alerts), firing)


def _window_kind(rec: Record) -> str:
    """What a DRIFT record is a window of: outcomes, or decisions in its spec."""
    try:
        window = json.loads(rec.body_json)["window"]
        return json.dumps([window.get("source", "decisions"), window.get("spec")], sort_keys=True)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""  # unreadable: read_window says so
