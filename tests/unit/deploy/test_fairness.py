"""The fairness snapshot: [fairness] parsed strictly, numbers equal fairlearn's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]
from sklearn.metrics import accuracy_score  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.config import load_config
from mrm.deploy.errors import DeployError
from mrm.deploy.evaldata import load_eval
from mrm.deploy.fairness import (
    FairnessConfig,
    fairness_snapshot,
    group_labels,
    replicate_stats,
    summary_line,
)

HEAD = '[data]\neval = "eval.csv"\ntarget = "default"\n'
GOOD = '[fairness]\nsensitive = ["sex"]\nfavourable_label = "0"\n'


def config_of(tmp_path: Path, body: str) -> FairnessConfig | None:
    path = tmp_path / "mrm.toml"
    path.write_text(body + HEAD)  # HEAD is a table: body may be top-level
    return load_config(tmp_path / "model.pkl", "1.0.0", {}, path).fairness


def test_a_full_table_and_its_gates(tmp_path: Path) -> None:
    got = config_of(
        tmp_path,
        "[gates]\nmin_demographic_parity_ratio = 0.8\nmax_equalized_odds_difference = 0.1\n"
        '[fairness]\nsensitive = ["sex", "age_band"]\nfavourable_label = 0\n'
        "bootstrap = 200\nmin_group_size = 10\n",
    )
    assert got == FairnessConfig(("sex", "age_band"), "0", 200, 10, 0.8, 0.1)
    assert config_of(tmp_path, "") is None
    defaults = config_of(tmp_path, GOOD)
    assert defaults is not None
    assert (defaults.bootstrap, defaults.min_group_size) == (1000, 30)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (GOOD + "colour = 1\n", "[fairness] colour"),
        ('[fairness]\nfavourable_label = "0"\n', "[fairness] sensitive"),
        ('[fairness]\nsensitive = []\nfavourable_label = "0"\n', "[fairness] sensitive"),
        ('[fairness]\nsensitive = "sex"\nfavourable_label = "0"\n', "[fairness] sensitive"),
        ('[fairness]\nsensitive = ["sex", 3]\nfavourable_label = "0"\n', "[fairness] sensitive"),
        ('[fairness]\nsensitive = ["sex", "sex"]\nfavourable_label = "0"\n', "sex named twice"),
        ('[fairness]\nsensitive = ["sex"]\n', "[fairness] favourable_label"),
        ('[fairness]\nsensitive = ["sex"]\nfavourable_label = true\n', "favourable_label"),
        (GOOD + "bootstrap = 5\n", "[fairness] bootstrap"),
        (GOOD + "bootstrap = 1e3\n", "[fairness] bootstrap"),
        (GOOD + "min_group_size = 0\n", "[fairness] min_group_size"),
        (GOOD + 'min_group_size = "30"\n', "[fairness] min_group_size"),
        ("fairness = 3\n", "[fairness] must be a table"),
        ("[gates]\nmin_demographic_parity_ratio = 0.8\n", "needs a [fairness] table"),
        ("[gates]\nmax_equalized_odds_difference = 0.1\n", "needs a [fairness] table"),
        (
            "[gates]\nmin_demographic_parity_ratio = 1.5\n" + GOOD,
            "[gates] min_demographic_parity_ratio",
        ),
        (
            "[gates]\nmin_demographic_parity_ratio = 0\n" + GOOD,
            "[gates] min_demographic_parity_ratio",
        ),
        (
            '[gates]\nmax_equalized_odds_difference = "low"\n' + GOOD,
            "[gates] max_equalized_odds_difference",
        ),
        (
            "[gates]\nmax_equalized_odds_difference = -0.1\n" + GOOD,
            "[gates] max_equalized_odds_difference",
        ),
    ],
)
def test_every_mistake_is_one_line_naming_the_key(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(DeployError) as e:
        config_of(tmp_path, body)
    message = str(e.value)
    assert "\n" not in message
    assert named in message, message
    assert str(tmp_path / "mrm.toml") in message


def biased(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Any]:
    """Labels, decisions and a sex column where women are approved (0) less often."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    truth = rng.integers(0, 2, n)
    approve = np.where(sex == "F", 0.45, 0.7)
    pred = np.where(rng.uniform(size=n) < approve, 0, 1)
    return truth, pred, sex


def fairlearn_frame(truth: Any, pred: Any, groups: Any) -> Any:
    fav_t, fav_p = (np.asarray(truth) == 0).astype(int), (np.asarray(pred) == 0).astype(int)
    return MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=fav_t,
        y_pred=fav_p,
        sensitive_features=groups,
    ), (fav_t, fav_p)


def test_the_numbers_are_fairlearns(tmp_path: Path) -> None:
    truth, pred, sex = biased(600, 1)
    cfg = FairnessConfig(("sex",), "0", bootstrap=200, min_demographic_parity_ratio=0.8)
    body = fairness_snapshot(
        cfg, truth, pred, {"sex": sex}, classes=[0, 1], rows=600, eval_sha256="ab"
    )
    frame, (fav_t, fav_p) = fairlearn_frame(truth, pred, sex)
    attr = body["attributes"]["sex"]
    for group in ("F", "M"):
        got = attr["groups"][group]
        assert got["count"] == int((sex == group).sum())
        for key in ("selection_rate", "accuracy", "tpr", "fpr"):
            assert got[key] == pytest.approx(frame.by_group.loc[group, key], abs=1e-12)
        lo, hi = got["ci"]["selection_rate"]
        assert lo < got["selection_rate"] < hi
        assert got["small"] is False
    kw = {"sensitive_features": sex}
    assert attr["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(fav_t, fav_p, **kw), abs=1e-12
    )
    assert attr["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(fav_t, fav_p, **kw), abs=1e-12
    )
    assert attr["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(fav_t, fav_p, **kw), abs=1e-12
    )
    for key in ("demographic_parity_ratio", "equalized_odds_difference"):
        lo, hi = attr["ci"][key]
        assert lo <= attr[key] <= hi
    assert attr["demographic_parity_ratio"] < 0.8
    assert body["passed"] is False
    assert body["failures"] == [body["failures"][0]]
    assert "sex: demographic parity ratio" in body["failures"][0]
    assert body["data"] == {"rows": 600, "sha256": "ab"}
    assert body["library"].startswith("fairlearn 0.")
    assert set(body) == {
        "favourable_label",
        "data",
        "attributes",
        "gates",
        "passed",
        "failures",
        "library",
    }
    assert body["gates"] == {
        "min_demographic_parity_ratio": 0.8,
        "max_equalized_odds_difference": None,
    }
    assert summary_line(body).startswith("sex: DP ratio ")


def test_each_bootstrap_replicate_is_fairlearn_on_the_resampled_rows() -> None:
    truth, pred, sex = biased(300, 2)
    sex = sex.astype(object)
    sex[:3] = "X"  # a small group, left out of the summaries
    names = sorted(set(sex.tolist()))
    codes = np.asarray([names.index(s) for s in sex])
    gated = np.asarray([name != "X" for name in names])
    fav_t, fav_p = (truth == 0).astype(np.int64), (pred == 0).astype(np.int64)
    indices = np.random.default_rng(5).integers(0, 300, size=(6, 300))
    stats = replicate_stats(codes, fav_t, fav_p, len(names), gated, indices)
    for b, rows in enumerate(indices):
        t, p, s = fav_t[rows], fav_p[rows], sex[rows]
        by_group = MetricFrame(
            metrics=selection_rate, y_true=t, y_pred=p, sensitive_features=s
        ).by_group
        for i, name in enumerate(names):
            if name in by_group.index:
                assert stats["selection_rate"][b, i] == pytest.approx(by_group[name], abs=1e-12)
            else:
                assert np.isnan(stats["selection_rate"][b, i])
        keep = s != "X"
        kw = {"sensitive_features": s[keep]}
        for key, fn in (
            ("demographic_parity_difference", demographic_parity_difference),
            ("demographic_parity_ratio", demographic_parity_ratio),
            ("equalized_odds_difference", equalized_odds_difference),
        ):
            assert stats[key][b] == pytest.approx(fn(t[keep], p[keep], **kw), abs=1e-12), key


def test_a_group_of_one_is_reported_flagged_and_not_gated() -> None:
    truth, pred, sex = biased(400, 3)
    sex = sex.astype(object)
    sex[0], truth[0] = "U", 0
    cfg = FairnessConfig(("sex",), "0", bootstrap=100, max_equalized_odds_difference=1.0)
    body = fairness_snapshot(
        cfg, truth, pred, {"sex": sex}, classes=[0, 1], rows=400, eval_sha256=""
    )
    one = body["attributes"]["sex"]["groups"]["U"]
    assert one["count"] == 1
    assert one["small"] is True
    assert one["fpr"] is None  # no truly unfavourable row: undefined, not 0
    keep = sex != "U"
    fav_t, fav_p = (truth == 0).astype(int), (pred == 0).astype(int)
    assert body["attributes"]["sex"]["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(fav_t[keep], fav_p[keep], sensitive_features=sex[keep])
    )
    assert body["passed"] is True


def test_too_few_large_groups_fails_a_gate_and_missing_values_are_a_group() -> None:
    truth, pred, _ = biased(40, 4)
    column = np.asarray(["A"] * 35 + [None] * 5, dtype=object)
    labels = group_labels(column)
    assert set(labels.tolist()) == {"A", "(missing)"}
    cfg = FairnessConfig(("g",), "0", bootstrap=100, min_demographic_parity_ratio=0.8)
    body = fairness_snapshot(
        cfg, truth, pred, {"g": column}, classes=[0, 1], rows=40, eval_sha256=""
    )
    attr = body["attributes"]["g"]
    assert attr["demographic_parity_ratio"] is None
    assert attr["ci"]["demographic_parity_ratio"] == [None, None]
    assert body["passed"] is False
    assert "need two to compare" in body["failures"][0]
    ungated = FairnessConfig(("g",), "0", bootstrap=100)
    assert fairness_snapshot(
        ungated, truth, pred, {"g": column}, classes=[0, 1], rows=40, eval_sha256=""
    )["passed"]


def test_a_favourable_label_the_model_does_not_know_is_one_line() -> None:
    truth, pred, sex = biased(50, 5)
    cfg = FairnessConfig(("sex",), "approved")
    with pytest.raises(DeployError, match="favourable_label = 'approved'"):
        fairness_snapshot(cfg, truth, pred, {"sex": sex}, classes=[0, 1], rows=50, eval_sha256="")


def test_sensitive_columns_are_read_but_not_fed_to_the_model(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"income": [1.0, 2.0, 3.0, 4.0], "sex": ["F", "M", "F", "M"], "default": [0, 1, 0, 1]}
    )
    model = LogisticRegression().fit(frame[["income"]], frame["default"])
    frame.to_csv(tmp_path / "eval.csv", index=False)
    data = load_eval(tmp_path / "eval.csv", "default", model, ("sex",))
    assert list(data.X.columns) == ["income"]
    assert data.sensitive["sex"].tolist() == ["F", "M", "F", "M"]
    with pytest.raises(DeployError) as e:
        load_eval(tmp_path / "eval.csv", "default", model, ("sex", "age_band"))
    assert "no sensitive column 'age_band'" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(DeployError, match="extra"):  # without [fairness], still an extra column
        load_eval(tmp_path / "eval.csv", "default", model)


def test_a_sensitive_column_that_is_a_model_input_stays_an_input(tmp_path: Path) -> None:
    frame = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0], "default": [1, 1, 0, 0]})
    model = LogisticRegression().fit(frame[["age"]], frame["default"])
    frame.to_csv(tmp_path / "eval.csv", index=False)
    data = load_eval(tmp_path / "eval.csv", "default", model, ("age",))
    assert list(data.X.columns) == ["age"]
    assert data.sensitive["age"].tolist() == [20.0, 30.0, 40.0, 50.0]
