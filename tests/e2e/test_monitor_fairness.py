"""Fairness in production against a real ledger and registry (PostgreSQL): a model
deployed with `[fairness]` on `employment` (one of its inputs) and `sex` (not one),
whose decisions through the ledger favour the employed far more than at deploy,
gets a "fairness" ALERT in the ledger, recorded before anyone is told; its DRIFT
record holds fairlearn's numbers on the window's rows and says `sex` is not
monitored."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    demographic_parity_ratio,
)

from mrm.client.registry import RegistryClient
from mrm.drift.fairness import NOT_AN_INPUT
from mrm.monitor.live import predicted_label
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger
from tests.support.credit import applicants, deploy, pipeline_model
from tests.support.monitored import MONITOR_TOML, World, drain

FEATURES = ["income", "debt_to_income", "credit_history_months", "employment"]
FAIRNESS = (
    '[fairness]\nsensitive = ["employment", "sex"]\nfavourable_label = "0"\n'
    "bootstrap = 100\nmin_group_size = 20\n"
)


def _people(n: int, seed: int) -> pd.DataFrame:
    """Applicants whose default does not depend on employment (nor on sex)."""
    frame = applicants(n, seed)
    rng = np.random.default_rng(seed + 7)
    frame["sex"] = rng.choice(["F", "M"], n)
    risk = frame.debt_to_income * 2 - frame.credit_history_months / 120
    frame["default"] = (risk + rng.normal(0, 0.3, n) > 0.6).astype(int)
    return frame


@pytest.fixture
def monitored_stack(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    train, test = _people(600, 1), _people(300, 2)
    model, _, _ = pipeline_model(train)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    test[[*FEATURES, "sex", "default"]].to_csv(tmp_path / "eval.csv", index=False)
    (tmp_path / "mrm.toml").write_text(
        '[model]\nname = "credit-risk"\n[data]\neval = "eval.csv"\ntarget = "default"\n'
        f'dataset_id = "sha256:{"ab" * 32}"\n[gates]\nfidelity_tolerance = 1e-4\n'
        f"min_demographic_parity_ratio = 0.6\n{FAIRNESS}{MONITOR_TOML}"
    )
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    return World(pg_ledger_server, tmp_path)


def _biased(n: int, seed: int) -> pd.DataFrame:
    """Half the window unemployed with heavy debts, half employed with light ones."""
    frame = applicants(n, seed)[FEATURES]
    rng = np.random.default_rng(seed)
    unemployed = np.arange(n) % 2 == 0
    frame["employment"] = np.where(
        unemployed, "unemployed", rng.choice(["salaried", "self-employed"], n)
    )
    frame["debt_to_income"] = np.where(
        unemployed, rng.uniform(0.85, 1.0, n), rng.uniform(0.0, 0.15, n)
    ).round(4)
    frame["credit_history_months"] = np.where(
        unemployed, 6.0, frame["credit_history_months"].clip(lower=120.0)
    )
    return frame


def test_biased_decisions_raise_a_fairness_alert_in_the_ledger(monitored_stack: World) -> None:
    with RegistryClient(
        monitored_stack.stack.registry_addr, auth=monitored_stack.monitor_auth
    ) as reg:
        version = reg.get_version("credit-risk", "1.0.0")
        shas = {a.role: a.sha256 for a in version.artifacts}
        profile = orjson.loads(reg.download(shas[registry_pb2.ARTIFACT_ROLE_REFERENCE_PROFILE]))
    stored = profile["fairness"]
    assert stored["attributes"]["employment"]["input"] is True
    assert stored["attributes"]["sex"]["input"] is False
    assert stored["gates"]["min_demographic_parity_ratio"] == 0.6
    deploy_ratio = stored["attributes"]["employment"]["deploy"]["demographic_parity_ratio"]
    assert deploy_ratio >= 0.6  # the deploy passed its gate

    told: list[str] = []

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        assert monitored_stack.reader.get_record(alert_id).kind  # recorded first
        told.append(alert_id)

    monitor = monitored_stack.monitor(notify)
    monitor.resume()
    frame = _biased(300, 21)
    served = monitored_stack.serve(frame)
    drain(monitor)

    (drift,) = [
        r for r in monitored_stack.kinds("DRIFT") if "fairness" in orjson.loads(r.body_json)
    ]  # one window of 300 decisions
    body = orjson.loads(drift.body_json)
    employment = body["fairness"]["attributes"]["employment"]
    assert body["fairness"]["attributes"]["sex"]["reason"] == NOT_AN_INPUT
    assert employment["breached"] is True
    assert employment["p_value"] < 0.01
    # fairlearn on the same rows: the window's decisions as the ledger holds them.
    labels = [
        str(predicted_label(orjson.loads(monitored_stack.reader.get_record(r).body_json)))
        for r in served
    ]
    favourable = np.asarray([label == "0" for label in labels], dtype=int)
    want = demographic_parity_ratio(
        favourable, favourable, sensitive_features=frame["employment"].to_numpy()
    )
    assert employment["demographic_parity_ratio"] == pytest.approx(want, abs=1e-12)
    assert employment["demographic_parity_ratio"] < 0.6
    assert employment["deploy"]["demographic_parity_ratio"] == pytest.approx(deploy_ratio)

    fairness = [
        orjson.loads(a.body_json) | {"id": a.record_id}
        for a in monitored_stack.kinds("ALERT")
        if orjson.loads(a.body_json).get("rule") == "fairness"
    ]
    (alert,) = fairness
    assert (alert["feature"], alert["metric"]) == ("employment", "demographic_parity_ratio")
    assert alert["value"] == employment["demographic_parity_ratio"]
    assert alert["threshold"] == 0.6
    assert alert["drift_record_id"] == drift.record_id
    assert alert["summary"].startswith("employment fairness: demographic parity ratio ")
    assert alert["id"] in told
