"""`mrmctl deploy` with [fairness]: the FAIRNESS_SNAPSHOT on a real ledger on PostgreSQL.

The numbers recorded are compared with fairlearn's, computed here on the same
evaluation rows and the model's own predictions; a model that fails the
four-fifths rule is refused, and the refusal is on the record.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped,unused-ignore]
from sklearn.metrics import accuracy_score  # type: ignore[import-untyped,unused-ignore]

from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from tests.conftest import RunningLedger
from tests.support.credit import applicants, deploy

FEATURES = ["income", "debt_to_income", "credit_history_months"]
FAIRNESS = (
    '[fairness]\nsensitive = ["sex", "employment"]\nfavourable_label = "0"\n'
    "bootstrap = 200\nmin_group_size = 20\n"
)


def people(n: int, seed: int, *, biased: bool) -> pd.DataFrame:
    """Applicants with a sex the model never sees; `biased`: women earn less,
    and income decides default, so a model on income approves women less."""
    frame = applicants(n, seed)
    rng = np.random.default_rng(seed + 100)
    frame["sex"] = rng.choice(["F", "M"], n)
    if biased:
        women = frame.sex == "F"
        frame.loc[women, "income"] = frame.loc[women, "income"] * 0.4
        frame["default"] = ((frame.income < 35_000) | (frame.debt_to_income > 0.8)).astype(int)
    return frame


def project(tmp: Path, *, biased: bool, gates: str, fairness: str = FAIRNESS) -> pd.DataFrame:
    train, test = people(600, 1, biased=biased), people(300, 2, biased=biased)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0)
    model.fit(train[FEATURES], train["default"])
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    test[[*FEATURES, "sex", "employment", "default"]].to_csv(tmp / "eval.csv", index=False)
    (tmp / "mrm.toml").write_text(
        '[model]\nname = "credit-risk"\n[data]\neval = "eval.csv"\ntarget = "default"\n'
        f'dataset_id = "sha256:{"ab" * 32}"\n[gates]\nfidelity_tolerance = 1e-4\n{gates}{fairness}'
    )
    return test


def fairlearn_numbers(model: Any, test: pd.DataFrame, attribute: str) -> dict[str, Any]:
    """What fairlearn says, on favourable (0) vs not, for the groups of `attribute`."""
    truth = (test["default"] == 0).astype(int).to_numpy()
    pred = (model.predict(test[FEATURES]) == 0).astype(int)
    groups = test[attribute].astype(str).to_numpy()
    frame = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=truth,
        y_pred=pred,
        sensitive_features=groups,
    )
    sizes = test[attribute].astype(str).value_counts()
    keep = np.asarray([sizes[g] >= 20 for g in groups])
    kw = {"sensitive_features": groups[keep]}
    return {
        "by_group": frame.by_group,
        "demographic_parity_difference": demographic_parity_difference(
            truth[keep], pred[keep], **kw
        ),
        "demographic_parity_ratio": demographic_parity_ratio(truth[keep], pred[keep], **kw),
        "equalized_odds_difference": equalized_odds_difference(truth[keep], pred[keep], **kw),
    }


def test_the_snapshot_is_recorded_with_the_version_and_equals_fairlearn(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = project(tmp_path, biased=False, gates="min_demographic_parity_ratio = 0.5\n")
    test.loc[0, "employment"] = "retired"  # a group of one: reported, flagged, not gated
    test[[*FEATURES, "sex", "employment", "default"]].to_csv(tmp_path / "eval.csv", index=False)
    model = pickle.loads((tmp_path / "model.pkl").read_bytes())
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", "-o", "json",
        monkeypatch=monkeypatch,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    with LedgerClient(pg_ledger_server.addr) as ledger:
        record = ledger.get_record(out["records"]["fairness_snapshot"])
        kinds = [r.kind for r in ledger.query(kind="FAIRNESS_SNAPSHOT")]
    assert len(kinds) == 1
    assert (record.model_name, record.model_version) == ("credit-risk", "1.0.0")
    assert out["leaf_indexes"]["fairness_snapshot"] == out["leaf_indexes"]["model_ingested"] + 3
    body = json.loads(record.body_json)
    assert body == out["fairness"]  # what --output json printed is what was recorded
    assert body["passed"] is True
    assert body["failures"] == []
    assert body["favourable_label"] == "0"
    assert body["data"]["rows"] == 300
    assert body["gates"]["min_demographic_parity_ratio"] == 0.5
    for attribute in ("sex", "employment"):
        want = fairlearn_numbers(model, test, attribute)
        got = body["attributes"][attribute]
        assert set(got["groups"]) == {str(g) for g in want["by_group"].index}
        for group, row in want["by_group"].iterrows():
            mine = got["groups"][str(group)]
            assert mine["count"] == int(row["count"])
            for key in ("selection_rate", "accuracy"):
                assert mine[key] == pytest.approx(row[key], abs=1e-12), (attribute, group, key)
            for key in ("tpr", "fpr"):
                assert mine[key] is None or mine[key] == pytest.approx(row[key], abs=1e-12)
        for key in (
            "demographic_parity_difference",
            "demographic_parity_ratio",
            "equalized_odds_difference",
        ):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (attribute, key)
            lo, hi = got["ci"][key]
            assert lo <= got[key] <= hi
    assert body["attributes"]["employment"]["groups"]["retired"]["small"] is True
    assert body["attributes"]["sex"]["groups"]["F"]["small"] is False
    with RegistryClient(pg_ledger_server.registry_addr) as reg:
        facts = json.loads(reg.get_version("credit-risk", "1.0.0").facts_json)
    assert facts["fairness"]["attributes"]["sex"]["demographic_parity_ratio"] == pytest.approx(
        body["attributes"]["sex"]["demographic_parity_ratio"]
    )
    text = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert text.exit_code == 0, text.output
    assert "✓ fairness   sex: DP ratio " in text.stderr


def test_a_model_failing_the_four_fifths_rule_is_refused_and_the_refusal_recorded(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = project(tmp_path, biased=True, gates="min_demographic_parity_ratio = 0.8\n")
    model = pickle.loads((tmp_path / "model.pkl").read_bytes())
    want = fairlearn_numbers(model, test, "sex")
    assert want["demographic_parity_ratio"] < 0.8  # the data is biased as meant
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 1, result.output
    assert "✗ fairness" in result.stderr
    assert "deploy refused (recorded as" in result.stderr
    assert "sex: demographic parity ratio" in result.stderr
    with LedgerClient(pg_ledger_server.addr) as ledger:
        refusals = [json.loads(r.body_json) for r in ledger.query(kind="DEPLOYMENT")]
        assert list(ledger.query(kind="FAIRNESS_SNAPSHOT")) == []  # nothing was registered
    assert [r["action"] for r in refusals] == ["refused"]
    refusal = refusals[0]
    assert any("sex: demographic parity ratio" in r for r in refusal["reasons"])
    recorded = refusal["facts"]["fairness"]
    assert recorded["passed"] is False
    assert recorded["failures"] == refusal["reasons"]  # no other gate failed
    assert recorded["attributes"]["sex"]["demographic_parity_ratio"] == pytest.approx(
        want["demographic_parity_ratio"], abs=1e-12
    )
    with RegistryClient(pg_ledger_server.registry_addr) as reg:
        assert list(reg.list_models()) == []


def test_a_sensitive_column_missing_from_the_data_is_one_line_naming_it(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(
        tmp_path,
        biased=False,
        gates="",
        fairness='[fairness]\nsensitive = ["sex", "age_band"]\nfavourable_label = "0"\n',
    )
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "no sensitive column 'age_band'" in errors[0]
    assert "Traceback" not in result.output
    with LedgerClient(pg_ledger_server.addr) as ledger:
        assert list(ledger.query()) == []
