"""DRIFT record bodies as the reports read them: ranked, plotted, and never a failed page;
a model's page shows the latest window of each spec its versions configure."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mrm.client.ledger import kind_value, new_record
from mrm.core.errors import InvalidArgument
from mrm.drift.compare import FeatureDrift, PredictionDrift
from mrm.explain.drift import DriftReader, valid_model, valid_version
from mrm.explain.drift_view import PLOTTED, read_window


def feature(name: str, psi: float, drifted: bool, labels: int = 4) -> dict[str, Any]:
    share = 1.0 / labels
    return FeatureDrift(
        name,
        "numeric",
        psi=psi,
        js=psi / 10,
        ks=psi / 5,
        ks_p=0.001,
        wasserstein=psi / 3,
        p_adjusted=0.002,
        drifted=drifted,
        reasons=[f"psi {psi:.3g} >= 0.2"] if drifted else [],
        labels=[f"bin {i}" for i in range(labels)],
        reference=[share] * labels,
        current=[share] * labels,
    ).to_json()


def drift_record(body: object, leaf: int = 41) -> Any:
    record = new_record("DRIFT", {}, model_name="credit-risk", model_version="1.2.4")
    record.body_json = json.dumps(body)
    record.leaf_index = leaf
    record.recorded_at.FromMicroseconds(1_790_000_000_000_000)
    return record


def body(features: list[dict[str, Any]], **report: Any) -> dict[str, Any]:
    return {
        "window": {
            "first_leaf": 3,
            "last_leaf": 402,
            "first_recorded_at_us": 1_789_999_000_000_000,
            "last_recorded_at_us": 1_789_999_900_000_000,
            "decisions": 400,
            "rows": 400,
            "unreadable": 0,
            "spec": {"rows": 400},
        },
        "report": {
            "rows": 400,
            "judged": True,
            "features": features,
            "prediction": PredictionDrift(
                0.4, 0.3, 1e-9, ["0", "1"], [0.7, 0.3], [0.4, 0.6]
            ).to_json(),
            "scores": None,
            "breaches": [
                {
                    "rule": "feature_drift",
                    "metric": "psi",
                    "feature": "b",
                    "value": 2.0,
                    "threshold": 0.2,
                },
                {
                    "rule": "prediction_drift",
                    "metric": "prediction_psi",
                    "feature": None,
                    "value": 0.4,
                    "threshold": 0.2,
                },
            ],
        }
        | report,
        "thresholds": {
            "window": [{"rows": 400}],
            "min_rows": 200,
            "alpha": 0.01,
            "thresholds": {"psi": 0.2, "js": 0.1},
        },
    }


def test_a_window_is_read_with_where_to_find_it() -> None:
    w = read_window(drift_record(body([feature("a", 0.1, False)])), "t")
    assert (w.model, w.version) == ("credit-risk", "1.2.4")
    assert w.leaf_index == 41
    assert (w.first_leaf, w.last_leaf, w.decisions, w.rows) == (3, 402, 400, 400)
    assert w.first_at.startswith("2026-09-21T")
    assert w.recorded_at.startswith("2026-09-21T")
    assert w.spec == "rows 400"
    assert ("psi", "0.2") in w.thresholds
    assert ("alpha", "0.01") in w.thresholds
    assert not w.error
    # A feature's breach is its row's reason: only the others are said once more.
    assert w.breaches == ("prediction drift: prediction_psi 0.4 >= 0.2",)
    assert w.prediction is not None
    assert w.prediction.rows == (("0", 0.7, 0.4), ("1", 0.3, 0.6))


def test_drifted_features_come_first_then_by_psi_and_the_top_are_plotted() -> None:
    features = [
        feature("calm-but-high", 0.9, False),
        feature("drifted-low", 0.3, True),
        feature("drifted-high", 1.5, True),
        feature("calm", 0.01, False),
        feature("calm-mid", 0.1, False),
    ]
    w = read_window(drift_record(body(features)), "t")
    assert [f.name for f in w.features] == [
        "drifted-high",
        "drifted-low",
        "calm-but-high",
        "calm-mid",
        "calm",
    ]
    assert (w.drifted_count, w.feature_count) == (2, 5)
    assert [p.plot.feature for p in w.plots] == ["drifted-high", "drifted-low", "calm-but-high"]
    assert len(w.plots) == PLOTTED
    # Element ids differ between charts of one page.
    assert len({p.ident for p in w.plots}) == PLOTTED
    assert not read_window(drift_record(body(features)), "t", plots=False).plots


def test_a_feature_whose_shares_do_not_match_its_bins_is_tabled_not_drawn() -> None:
    broken = feature("broken", 3.0, True) | {"current": [0.5, 0.5]}
    w = read_window(drift_record(body([broken, feature("fine", 1.0, True)])), "t")
    assert [f.name for f in w.features] == ["broken", "fine"]
    assert [p.plot.feature for p in w.plots] == ["fine"]


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"report": {}},
        {"window": {}, "report": {"features": "nope"}},
        {"window": [], "report": {}},
    ],
)
def test_an_unreadable_body_is_shown_as_such(bad: object) -> None:
    w = read_window(drift_record(bad), "t")
    assert w.error.startswith("its body is not a drift report")
    assert w.leaf_index == 41  # still says which record it is
    assert not w.features


def test_not_a_json_body_is_shown_as_such() -> None:
    record = drift_record({})
    record.body_json = "{"
    assert read_window(record, "t").error


def test_non_finite_or_missing_statistics_show_as_absent() -> None:
    odd = feature("odd", 0.5, False) | {"psi": None, "js": "high", "ks": True}
    (row,) = read_window(drift_record(body([odd])), "t").features
    assert (row.psi, row.js, row.ks) == (None, None, None)
    assert json.dumps(row.reasons) == "[]"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("m" * 64, "at most 63"),
        ("credit\x07risk", "non-printable"),
        ("credit\u200brisk", "non-printable"),
        ("Credit", "is not a model name"),
        ("", "is not a model name"),
        ("<script>", "is not a model name"),
    ],
)
def test_bad_model_names(name: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        valid_model(name)


def test_good_names_and_versions() -> None:
    assert valid_model("m" * 63) == "m" * 63
    assert valid_model("credit-risk") == "credit-risk"
    assert valid_version("1.2.4") == "1.2.4"
    with pytest.raises(InvalidArgument, match=re.escape("version: '1.2' is not semver")):
        valid_version("1.2")


class _Ledger:
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def query(self, **q: Any) -> Any:
        """The records of the kind asked for, newest first (as they are listed)."""
        return iter([r for r in self.records if r.kind == kind_value(q["kind"])])


class _Registry:
    def get_model(self, name: str) -> None:
        return None


def test_the_drift_page_shows_the_latest_window_of_each_spec() -> None:
    """Interleaved 300-row and hourly windows (newest first): each spec's latest."""
    hourly = {"seconds": 3600, "step": 600}
    specs = [{"rows": 300}, {"rows": 300}, hourly, {"rows": 300}, hourly]
    records = []
    for i, spec in enumerate(specs):
        b = body([feature("income", 0.1, False)])
        b["window"]["spec"] = spec
        records.append(drift_record(b, leaf=100 - i))
    evidence: Any = type("E", (), {"ledger": _Ledger(records), "registry": _Registry()})()
    page = DriftReader(evidence).for_model("credit-risk")
    assert [(w.leaf_index, w.spec) for w in page.windows] == [
        (100, "rows 300"),
        (98, "seconds 3600, step 600"),
    ]
    assert [w.leaf_index for w in page.history] == [100, 99, 98, 97, 96]


def test_a_windows_fairness_is_read_and_drawn() -> None:
    import jinja2

    import mrm.explain

    attributes = {
        "region": {
            "monitored": True,
            "rows": 400,
            "groups": {
                "north": {"count": 200, "selection_rate": 0.6, "small": False},
                "south": {"count": 195, "selection_rate": 0.2, "small": False},
                "west": {"count": 5, "selection_rate": 0.0, "small": True},
            },
            "demographic_parity_ratio": 0.2 / 0.6,
            "breached": True,
            "deploy": {
                "demographic_parity_ratio": 0.96,
                "groups": {"north": {"selection_rate": 0.5}, "south": {"selection_rate": 0.48}},
            },
        },
        "sex": {"monitored": False, "reason": "not monitored: not a model input", "deploy": {}},
    }
    fairness = {"favourable_label": "1", "attributes": attributes, "breaches": []}
    w = read_window(drift_record(body([feature("a", 0.1, False)]) | {"fairness": fairness}), "t")
    region, sex = w.fairness
    assert region.note == "demographic parity ratio 0.333 (0.960 at deploy)"
    assert region.breached
    assert region.groups[0] == ("north", 200, 0.6, 0.5, False)
    assert region.groups[2] == ("west", 5, 0.0, None, True)
    assert (sex.note, sex.breached, sex.groups) == ("not monitored: not a model input", False, ())
    assert read_window(drift_record(body([])), "t").fairness == ()  # a body without it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(mrm.explain.__name__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.from_string('{% import "_drift.html" as d %}{{ d.drift_window(w) }}').render(w=w)
    assert "<h4>Fairness</h4>" in html
    assert "breaches its gate" in html
    assert "not monitored: not a model input" in html
    assert "(small: not compared)" in html
