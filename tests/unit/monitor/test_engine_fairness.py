"""Fairness in the monitor's windows (mrm.monitor.engine), against an in-memory ledger:
a window of biased decisions raises one "fairness" ALERT per attribute, recorded
before anyone is told; a fair window is silent; outcomes carry their decision's
groups into equalized odds; the DRIFT body says which attribute is not monitored."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.ledger import new_record
from mrm.drift.config import MonitorConfig, WindowSpec
from mrm.drift.fairness import NOT_AN_INPUT
from mrm.drift.fairness_reference import fairness_reference
from mrm.drift.profile import ReferenceProfile, build_profile
from mrm.kernel.schema import Feature, InputSchema
from mrm.monitor.engine import Monitor, Reference
from mrm.monitor.live import DECISION_KEY, LABEL_KEY
from tests.support.monitor_fakes import FakeLedger, FakeRegistry, S, drain

MODEL, VERSION = "m", "1.0.0"
SCHEMA = InputSchema((Feature("x", "float", 0), Feature("region", "string", 1)), "columns")


def _snapshot() -> dict[str, Any]:
    group = {"count": 500, "selection_rate": 0.5, "accuracy": 0.9, "tpr": 0.9, "fpr": 0.1}
    attr = {
        "groups": {"north": group | {"small": False}, "south": group | {"small": False}},
        "demographic_parity_difference": 0.01,
        "demographic_parity_ratio": 0.98,
        "equalized_odds_difference": 0.02,
    }
    return {
        "favourable_label": "1",
        "attributes": {"region": attr, "sex": attr},
        "gates": {"min_demographic_parity_ratio": 0.8, "max_equalized_odds_difference": 0.1},
    }


def _monitor(ledger: FakeLedger, notify: Any = None) -> Monitor:
    config = MonitorConfig(windows=(WindowSpec("rows", 300),), min_rows=200)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x": rng.normal(0, 1, 1000), "region": rng.choice(["north", "south"], 1000)}
    )
    kinds: dict[str, Any] = {"x": "numeric", "region": "categorical"}
    fairness = fairness_reference(_snapshot(), 30, SCHEMA.names)
    labels = (frame["x"] > 0).astype(int).tolist()
    doc = build_profile(frame, kinds, labels, None, {"accuracy": 0.9}, config, fairness)
    monitor = Monitor(ledger, FakeRegistry(), notify=notify, page_size=100)  # type: ignore[arg-type]
    monitor.references[(MODEL, VERSION)] = Reference(
        ReferenceProfile.from_json(doc), SCHEMA, config, {"accuracy": 0.9}
    )
    return monitor


def _serve(ledger: FakeLedger, n: int, seed: int, south_rate: float) -> list[tuple[str, int]]:
    """n one-row decisions alternating north/south; north is favoured (1) half the
    time, south `south_rate` of the time. Returns (record id, label) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        region = "north" if i % 2 == 0 else "south"
        label = int(rng.random() < (0.5 if region == "north" else south_rate))
        body = {
            "request": {"inputs": {"x": [[float(rng.normal())]], "region": [[region]]}},
            "response": {"label": [label]},
        }
        ledger.clock_us += S
        rid = f"0190e0d2-0000-7000-8000-{seed:06d}{i:06d}"
        rec = new_record("PREDICTION", body, record_id=rid, model_name=MODEL, model_version=VERSION)
        ledger.add(rec, ledger.clock_us)
        out.append((rid, label))
    return out


def _bodies(ledger: FakeLedger, kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.body_json) | {"id": r.record_id} for r in ledger.kinds(kind)]


def test_biased_decisions_raise_one_fairness_alert_per_attribute() -> None:
    ledger = FakeLedger()
    told: list[str] = []

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        assert ledger.get_record(alert_id)  # recorded first
        told.append(alert_id)

    monitor = _monitor(ledger, notify)
    _serve(ledger, 300, 1, south_rate=0.5)  # fair
    drain(monitor)
    (fair,) = _bodies(ledger, "DRIFT")
    assert fair["fairness"]["attributes"]["region"]["breached"] is False
    assert fair["fairness"]["attributes"]["sex"]["monitored"] is False
    assert fair["fairness"]["attributes"]["sex"]["reason"] == NOT_AN_INPUT
    assert _bodies(ledger, "ALERT") == []

    _serve(ledger, 300, 2, south_rate=0.15)  # south rarely favoured
    _serve(ledger, 300, 3, south_rate=0.15)  # still: the alert is already firing
    drain(monitor)
    drift = _bodies(ledger, "DRIFT")
    assert len(drift) == 3
    region = drift[1]["fairness"]["attributes"]["region"]
    assert region["breached"] is True
    assert region["demographic_parity_ratio"] < 0.8
    assert region["deploy"]["demographic_parity_ratio"] == 0.98
    (alert,) = _bodies(ledger, "ALERT")
    assert (alert["rule"], alert["feature"], alert["metric"]) == (
        "fairness",
        "region",
        "demographic_parity_ratio",
    )
    assert alert["threshold"] == 0.8
    assert alert["value"] == region["demographic_parity_ratio"]
    assert alert["drift_record_id"] == drift[1]["id"]
    assert alert["summary"].startswith("region fairness: demographic parity ratio 0.")
    assert "(< 0.8)" in alert["summary"]
    assert told == [alert["id"]]


def test_outcomes_carry_their_decisions_groups_into_equalized_odds() -> None:
    ledger = FakeLedger()
    monitor = _monitor(ledger)
    served = _serve(ledger, 300, 4, south_rate=0.5)
    drain(monitor)
    # North's decisions were all right; south's favourable ones were all wrong.
    outcomes = []
    for i, (rid, label) in enumerate(served[:200]):
        truth = label if i % 2 == 0 else 0
        body = {DECISION_KEY: rid, LABEL_KEY: truth}
        outcomes.append(
            new_record("OUTCOME", body, record_id=f"{rid[:-6]}9{rid[-5:]}", model_name=MODEL,
                       model_version=VERSION)
        )  # fmt: skip
    ledger.append(outcomes)
    drain(monitor)
    (performance,) = [d for d in _bodies(ledger, "DRIFT") if d["window"].get("source")]
    region = performance["fairness"]["attributes"]["region"]
    assert region["rows"] == 200
    assert region["groups"]["north"]["accuracy"] == 1.0
    assert region["groups"]["south"]["tpr"] is None  # no truly favourable southerner
    assert region["equalized_odds_difference"] > 0.1
    alerts = [a for a in _bodies(ledger, "ALERT") if a["rule"] == "fairness"]
    (alert,) = alerts
    assert (alert["feature"], alert["metric"]) == ("region", "equalized_odds_difference")
    assert alert["drift_record_id"] == performance["id"]
