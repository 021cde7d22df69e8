"""`mrmctl deploy` end to end: real registry and ledger on PostgreSQL, real ONNX Runtime.

Every fact the deploy records is checked against an independent computation
here: scikit-learn's metrics recomputed, files hashed again, the stored ONNX
model downloaded and run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from click.testing import CliRunner
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped,unused-ignore]

from mrm.cli.main import mrmctl
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from tests.conftest import RunningLedger
from tests.support.credit import (
    Builder,
    applicants,
    deploy,
    pipeline_model,
    project,
    regressor,
    tree_model,
)


@pytest.mark.parametrize(
    "build", [tree_model, pipeline_model, regressor], ids=["gbt", "pipeline", "regressor"]
)
def test_deploy_records_every_fact(
    build: Builder, pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X, target = project(tmp_path, build)
    result = deploy(
        pg_ledger_server,
        tmp_path,
        "model.pkl",
        "--version",
        "1.2.4",
        "-o",
        "json",
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    y = pd.read_csv(tmp_path / "eval.csv")[target]
    with (
        LedgerClient(pg_ledger_server.addr) as ledger,
        RegistryClient(pg_ledger_server.registry_addr) as reg,
    ):
        records = {k: ledger.get_record(v) for k, v in out["records"].items()}
        onnx = reg.download(out["artifacts"]["onnx_model"])
        profile = json.loads(reg.download(out["artifacts"]["reference_profile"]))
    ingested = json.loads(records["model_ingested"].body_json)
    assert ingested["facts"]["source_commit"]["sha"].startswith("3f2a9c1")
    assert ingested["facts"]["deployed_by"]["ci_actor"] == "devin"
    assert (
        ingested["facts"]["model_file"]["sha256"]
        == hashlib.sha256((tmp_path / "model.pkl").read_bytes()).hexdigest()
    )
    lineage = json.loads(records["data_lineage"].body_json)
    assert (
        lineage["training_data_id"]
        == "sha256:" + hashlib.sha256((tmp_path / "train.csv").read_bytes()).hexdigest()
    )
    perf = json.loads(records["performance_snapshot"].body_json)
    assert perf["eval_sha256"] == hashlib.sha256((tmp_path / "eval.csv").read_bytes()).hexdigest()
    assert perf["rows"] == 200
    pred = model.predict(X)
    if target == "default":
        assert perf["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred), abs=1e-12)
        assert perf["f1"] == pytest.approx(metrics.f1_score(y, pred, pos_label=1), abs=1e-12)
        assert perf["precision"] == pytest.approx(
            metrics.precision_score(y, pred, pos_label=1), abs=1e-12
        )
        assert perf["recall"] == pytest.approx(
            metrics.recall_score(y, pred, pos_label=1), abs=1e-12
        )
        assert perf["roc_auc"] == pytest.approx(
            metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]), abs=1e-12
        )
    else:
        assert perf["mae"] == pytest.approx(metrics.mean_absolute_error(y, pred), abs=1e-9)
        assert perf["r2"] == pytest.approx(metrics.r2_score(y, pred), abs=1e-12)
    assert hashlib.sha256(onnx).hexdigest() == out["onnx_sha256"]
    # The reference profile the monitor measures drift against: the evaluation
    # data's distributions, recorded by hash with the version.
    assert profile["format"] == "mrm.reference-profile.v1"
    assert profile["rows"] == 200
    assert out["artifacts"]["reference_profile"] in records["model_ingested"].body_json
    numeric = next(c for c in X.columns if pd.api.types.is_float_dtype(X[c]))
    assert profile["features"][numeric]["mean"] == pytest.approx(float(X[numeric].mean()))
    assert profile["monitor"]["min_rows"] == 200
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    assert session.get_inputs()  # the stored bytes are a loadable model
    assert out["stage"] == "production"
    assert records["deployment"].model_version == "1.2.4"
    # Registering the same bytes again is idempotent.
    again = deploy(
        pg_ledger_server,
        tmp_path,
        "model.pkl",
        "--version",
        "1.2.4",
        "-o",
        "json",
        monkeypatch=monkeypatch,
    )
    assert again.exit_code == 0, again.output
    replay = json.loads(again.stdout)
    assert replay["already_registered"] is True
    # The registry reads the original's linked records back: the same ids and leaves.
    for kind in ("model_ingested", "data_lineage", "performance_snapshot"):
        assert replay["records"][kind] == out["records"][kind]
        assert replay["leaf_indexes"][kind] == out["leaf_indexes"][kind]
        assert records[kind].leaf_index == out["leaf_indexes"][kind]


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("touch pwned",))


def test_bad_input_is_one_line_and_registers_nothing(
    ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.neighbors import KNeighborsClassifier  # type: ignore[import-untyped,unused-ignore]

    project(tmp_path, tree_model)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Evil()))
    (tmp_path / "corrupt.pkl").write_bytes(b"\x80\x04not a pickle")
    train = applicants(100, 3)
    knn = KNeighborsClassifier().fit(train[["income", "debt_to_income"]], train["default"])
    (tmp_path / "knn.pkl").write_bytes(pickle.dumps(knn))
    pd.read_csv(tmp_path / "eval.csv").drop(columns=["default"]).to_csv(
        tmp_path / "no_target.csv", index=False
    )
    extra = pd.read_csv(tmp_path / "eval.csv")
    extra["zodiac"] = "leo"
    extra.to_csv(tmp_path / "extra.csv", index=False)
    nans = pd.read_csv(tmp_path / "eval.csv")
    nans.loc[3, "income"] = np.nan
    nans.to_csv(tmp_path / "nans.csv", index=False)
    cases: list[tuple[list[str], int, str]] = [
        (["missing.pkl", "--version", "1.0.0"], 2, "missing.pkl"),
        (["corrupt.pkl", "--version", "1.0.0"], 2, "corrupt.pkl"),
        (["evil.pkl", "--version", "1.0.0"], 2, "system"),
        (["knn.pkl", "--version", "1.0.0"], 2, "KNeighborsClassifier"),
        (["model.pkl", "--version", "1.0.0", "--eval-data", "no_target.csv"], 2, "default"),
        (["model.pkl", "--version", "1.0.0", "--eval-data", "extra.csv"], 2, "zodiac"),
        (["model.pkl", "--version", "1.0.0", "--eval-data", "nans.csv"], 2, "income"),
        (["model.pkl", "--version", "1.2"], 2, "not semver"),
        (["model.pkl", "--version", "1.0.0", "--name", "Credit Risk!"], 2, "not valid"),
        (["model.pkl", "--version", "1.0.0", "--min-metric", "accuracy=1.01"], 1, "accuracy"),
    ]
    for args, code, text in cases:
        result = deploy(ledger_server, tmp_path, *args, monkeypatch=monkeypatch)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
        assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1, (
            result.stderr
        )
    # A bad [monitor] table is one line naming the key, before anything is registered.
    config = (tmp_path / "mrm.toml").read_text()
    for table, key in (
        ('[monitor]\nthresholds = { psi = "high" }\n', "monitor.thresholds.psi"),
        ("[monitor]\ncolour = 1\n", "monitor.colour"),
        ("[[monitor.window]]\nrows = 500\nseconds = 60\n", "monitor.window"),
    ):
        (tmp_path / "mrm.toml").write_text(config + table)
        result = deploy(
            ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
        )
        assert result.exit_code == 2, (table, result.output)
        assert key in result.stderr, result.stderr
        assert "Traceback" not in result.output
    (tmp_path / "mrm.toml").write_text(config)
    assert not (tmp_path / "pwned").exists()  # the malicious pickle never ran
    with RegistryClient(ledger_server.registry_addr) as reg:
        assert list(reg.list_models()) == []
    with LedgerClient(ledger_server.addr) as ledger:
        refused = [json.loads(r.body_json) for r in ledger.query(kind="DEPLOYMENT")]
    assert [r["action"] for r in refused] == ["refused"]  # the failed gate is on the record
    assert "accuracy" in refused[0]["reasons"][0]


def test_same_version_other_bytes_and_services_down(
    ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    project(tmp_path, tree_model)
    assert (
        deploy(
            ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
        ).exit_code
        == 0
    )
    project(tmp_path, pipeline_model)  # other bytes
    clash = deploy(
        ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert clash.exit_code == 2
    assert "other artifacts" in clash.stderr
    ledger_server.stack.run(ledger_server.stack.stack.servers["ledger"].stop(), timeout=30)
    down = deploy(
        ledger_server, tmp_path, "model.pkl", "--version", "2.0.0", monkeypatch=monkeypatch
    )
    assert down.exit_code == 3, down.output
    with RegistryClient(ledger_server.registry_addr) as reg:
        assert [v.version for v in reg.list_versions("credit-risk")] == ["1.0.0"]
    monkeypatch.chdir(tmp_path)
    unreachable = CliRunner().invoke(
        mrmctl,
        [
            "--registry-addr",
            "127.0.0.1:9",
            "--timeout",
            "2",
            "deploy",
            "model.pkl",
            "--version",
            "3.0.0",
        ],
    )
    assert unreachable.exit_code == 3


def test_dry_run_registers_nothing(
    ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, tree_model)
    result = deploy(
        ledger_server,
        tmp_path,
        "model.pkl",
        "--version",
        "1.0.0",
        "--dry-run",
        "-o",
        "json",
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dry_run"] is True
    assert out["gates_passed"] is True
    with RegistryClient(ledger_server.registry_addr) as reg:
        assert list(reg.list_models()) == []


def test_regression_gate_against_production(
    ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, tree_model)
    first = deploy(
        ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert first.exit_code == 0, first.output

    def worse(train: pd.DataFrame) -> tuple[Any, list[str], str]:
        cols = ["income"]  # a model that ignores what predicts default
        return (
            GradientBoostingClassifier(n_estimators=5, random_state=0).fit(
                train[cols], train["default"]
            ),
            cols,
            "default",
        )

    project(tmp_path, worse)
    refused = deploy(
        ledger_server,
        tmp_path,
        "model.pkl",
        "--version",
        "1.1.0",
        "--max-regression",
        "0.01",
        monkeypatch=monkeypatch,
    )
    assert refused.exit_code == 1, refused.output
    assert "production" in refused.stderr
    assert "deploy refused (recorded as" in refused.stderr
    with RegistryClient(ledger_server.registry_addr) as reg:
        assert reg.get_model("credit-risk").production_version == "1.0.0"
        assert [v.version for v in reg.list_versions("credit-risk")] == ["1.0.0"]
