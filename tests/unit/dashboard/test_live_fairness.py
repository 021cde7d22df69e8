"""The dashboard's fairness in production: each attribute's latest selection-rate
ratio (from a window of decisions) and equalized-odds difference (from a window of
outcomes), newest first, of one version, each with the DRIFT record it is from."""

from __future__ import annotations

import json
from typing import Any

from mrm.client.ledger import new_record
from mrm.dashboard.figures import Live, _live_fairness
from mrm.dashboard.views import FairAttribute, Fairness, LiveFairness


def _window(source: str, attributes: dict[str, Any], version: str = "1.0.0") -> Any:
    body = {"window": {"source": source}, "fairness": {"attributes": attributes}}
    return new_record("DRIFT", body, model_name="m", model_version=version)


def test_the_newest_window_of_each_kind_gives_the_production_figures() -> None:
    newest_first = [
        _window("outcomes", {"region": {"monitored": True, "equalized_odds_difference": 0.3}}),
        _window("decisions", {"region": {"monitored": True, "demographic_parity_ratio": 0.4}}),
        _window("decisions", {"region": {"monitored": True, "demographic_parity_ratio": 0.9}}),
        _window("decisions", {"sex": {"monitored": False, "reason": "not monitored: x"}}),
        _window("decisions", {"region": {"monitored": True}}, version="0.9.0"),
    ]
    live: Live = {}
    for rec in newest_first:
        _live_fairness(live, rec, json.loads(rec.body_json))
    assert live[("1.0.0", "region")] == {
        "odds_difference": 0.3,
        "odds_record_id": newest_first[0].record_id,
        "parity_ratio": 0.4,
        "parity_record_id": newest_first[1].record_id,
    }
    assert live[("1.0.0", "sex")] == {"note": "not monitored: x"}
    assert ("0.9.0", "region") in live  # kept apart: the dashboard shows one version's
    fairness = Fairness(
        "r", "now", "1.0.0", True, (), (FairAttribute("region", 0.95, 0.02),),
        (LiveFairness("region", **live[("1.0.0", "region")]),),
    )  # fmt: skip
    found = fairness.live("region")
    assert found is not None
    assert found.parity_ratio == 0.4
    assert fairness.live("sex") is None
