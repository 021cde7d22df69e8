"""mrmctl drift's parsing and rendering, without a server: `--since`, and DRIFT
bodies that lack parts (an older monitor, an outcomes window, a categorical feature),
and the latest windows of each spec when a version has several."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
import pytest

from mrm.cli.monitor import Since, _print_window, latest_windows, window_json
from mrm.client.ledger import new_record
from mrm.v1 import ledger_pb2


def _drift(body: dict[str, Any]) -> ledger_pb2.Record:
    return new_record("DRIFT", body, model_name="credit-risk", model_version="1.0.0")


def test_since_takes_a_duration_or_a_time() -> None:
    since = Since()
    assert since.convert("2026-05-01T13:30:00Z", None, None) == datetime(
        2026, 5, 1, 13, 30, tzinfo=UTC
    )
    assert since.convert("2026-05-01", None, None) == datetime(2026, 5, 1, tzinfo=UTC)
    # further back is earlier, whatever the clock says
    assert since.convert("2w", None, None) < since.convert("7d", None, None)
    assert since.convert("7d", None, None) < since.convert("12h", None, None)
    assert since.convert("12h", None, None) < since.convert("30m", None, None)
    for bad in ("last tuesday", "7y", "-3d", ""):
        with pytest.raises(click.BadParameter, match="duration"):
            since.convert(bad, None, None)


def test_a_window_without_a_report_renders(capsys: pytest.CaptureFixture[str]) -> None:
    view = window_json(_drift({"window": {"first_leaf": 1, "last_leaf": 2}}))
    assert view["features"] == []
    assert view["source"] == "decisions"
    assert view["window"]["first_recorded_at"] is None
    _print_window(view)
    assert "window of None decisions" in capsys.readouterr().out


def test_features_are_sorted_drifted_first_then_by_psi(
    capsys: pytest.CaptureFixture[str],
) -> None:
    features = [
        {"name": "a", "kind": "numeric", "psi": 0.9, "drifted": False},
        {"name": "b", "kind": "categorical", "psi": 0.3, "cramers_v": 0.4, "chi2_p": 1e-9,
         "drifted": True, "ks": 0.5},
        {"name": "c", "kind": "numeric", "psi": None, "drifted": False},
        {"name": "d", "kind": "numeric", "psi": 0.95, "ks": 0.2, "ks_p": 0.5, "drifted": False},
    ]  # fmt: skip
    body = {
        "window": {"decisions": 5, "first_recorded_at_us": 0, "last_recorded_at_us": 1},
        "report": {"judged": True, "features": features, "breaches": []},
    }
    view = window_json(_drift(body))
    assert [f["name"] for f in view["features"]] == ["b", "d", "a", "c"]
    b = view["features"][0]
    assert b["cramers_v"] == 0.4
    assert b["ks"] is None  # not a statistic of a categorical feature
    assert b["p_value"] == 1e-9
    assert view["features"][1]["p_value"] == 0.5
    assert view["window"]["first_recorded_at"] == "1970-01-01T00:00:00.000000Z"
    _print_window(view)
    out = capsys.readouterr().out
    rows = [ln.split("│")[1].strip() for ln in out.splitlines() if ln.startswith("│")]
    assert rows == ["b", "d", "a", "c"]
    assert "no threshold breached" in out
    json.dumps(view)  # what --output json prints


@pytest.mark.parametrize(
    "metrics",
    [
        {"live": {"f1": 0.61}, "deploy": {"f1": 0.8}},
        {"f1": {"live": 0.61, "deploy": 0.8}},
    ],
    ids=["live and deploy tables", "per metric"],
)
def test_live_metrics_beside_the_deploy_time_ones(
    metrics: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "window": {"source": "outcomes", "outcomes": 7, "rows": 6},
        "metrics": metrics,
        "report": {
            "judged": True,
            "breaches": [{"rule": "performance", "metric": "f1", "value": 0.19, "threshold": 0.05}],
        },
    }
    _print_window(window_json(_drift(body)))
    out = capsys.readouterr().out
    assert "window of 7 outcomes (6 joined to their decisions)" in out
    (row,) = [ln for ln in out.splitlines() if "│ f1" in ln]
    assert "0.610" in row
    assert "0.800" in row
    assert "performance: live f1 fell by 0.19 >= 0.05" in out


def test_the_latest_windows_of_each_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """Five 300-row windows recorded since the latest hourly one: both are shown."""
    hourly = {"seconds": 3600, "step": 600}
    specs = [{"rows": 300}] * 5 + [hourly, {"rows": 300}, hourly]  # newest first
    bodies = [{"window": {"spec": spec, "first_leaf": i}} for i, spec in enumerate(specs)]
    bodies.insert(2, {"window": {"source": "outcomes", "first_leaf": 99}})
    views = [window_json(_drift(b)) for b in bodies]
    latest = latest_windows(views, 1)
    assert [(v["window"]["spec"], v["window"]["first_leaf"]) for v in latest] == [
        ({"rows": 300}, 0),
        (None, 99),
        (hourly, 5),
    ]
    assert [v["window"]["first_leaf"] for v in latest_windows(views, 2)] == [0, 1, 99, 5, 7]
    _print_window(latest[2])
    assert "window of None decisions (3600 seconds, step 600)" in capsys.readouterr().out


def test_the_fairness_section_is_a_table_and_a_line_per_attribute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mrm.drift.fairness import decision_fairness
    from mrm.drift.fairness_reference import FairnessReference, fairness_reference

    group = {"count": 100, "selection_rate": 0.5, "small": False}
    attr = {"groups": {"a": group, "b": group}, "demographic_parity_ratio": 0.96}
    snapshot = {
        "favourable_label": "1",
        "attributes": {"region": attr, "sex": attr},
        "gates": {"min_demographic_parity_ratio": 0.8},
    }
    ref = FairnessReference.from_json(fairness_reference(snapshot, 30, ["region"]))
    groups = ["a"] * 100 + ["b"] * 100
    labels = [1] * 60 + [0] * 40 + [1] * 20 + [0] * 80
    fair = decision_fairness(ref, {"region": groups}, labels, judged=True, alpha=0.01)
    body = {
        "window": {"decisions": 200},
        "report": {"judged": True, "features": [], "breaches": []},
        "fairness": fair.to_json(),
    }
    view = window_json(_drift(body))
    assert view["fairness"]["attributes"]["region"]["breached"] is True
    _print_window(view)
    out = capsys.readouterr().out
    (a,) = [ln for ln in out.splitlines() if "│ a " in ln]
    assert "0.600" in a  # live selection rate
    assert "0.500" in a  # at deploy
    assert "region: demographic parity ratio 0.333 (0.960 at deploy)" in out
    assert "BREACHED" in out
    assert "sex: not monitored: not a model input" in out
    assert "fairness: region demographic_parity_ratio 0.333 < 0.8" in out
    assert "no threshold breached" not in out
