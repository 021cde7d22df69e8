"""`mrmctl predictions`: the recorded decisions with their exact payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from mrm.client.ledger import LedgerClient
from tests.conftest import RunningLedger, start_ledger
from tests.support.decisions import decide, deploy_explained
from tests.support.mrmctl import cli


@dataclass
class Decided:
    stack: RunningLedger
    model: Any
    X: pd.DataFrame
    alice: list[str]
    bob: list[str]


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Decided]:
    tmp: Path = tmp_path_factory.mktemp("predictions")
    stack = start_ledger(tmp / "home")
    try:
        model, X, _ = deploy_explained(stack, tmp)
        alice = decide(stack, "credit-risk", X.iloc[:2].to_numpy(), "alice-1003")
        bob = decide(stack, "credit-risk", X.iloc[2:3].to_numpy(), "bob-17")
        yield Decided(stack, model, X, alice, bob)
    finally:
        stack.stack.stop()


def test_predictions_json_carries_the_exact_payloads(decided: Decided) -> None:
    done = cli(decided.stack, "predictions", "--output", "json")
    assert done.exit_code == 0, done.output
    docs = json.loads(done.stdout)
    assert [d["record_id"] for d in docs] == list(reversed(decided.alice + decided.bob))
    with LedgerClient(decided.stack.addr) as led:
        for doc in docs:
            stored = json.loads(led.get_record(doc["record_id"]).body_json)
            assert doc["request"] == stored["request"]
            assert doc["response"] == stored["response"]
            assert doc["onnx_sha256"] == stored["onnx_sha256"]
    newest = docs[0]
    (inputs,) = newest["request"]["inputs"].values()
    np.testing.assert_allclose(inputs, decided.X.iloc[2:3].to_numpy(np.float32))
    assert newest["response"]["label"] == decided.model.predict(decided.X.iloc[2:3]).tolist()
    assert (newest["model"], newest["version"]) == ("credit-risk", "1.2.4")
    assert newest["subject"].startswith("hmac-sha256:")
    assert len(newest["trace_id"]) == 32


def test_predictions_by_subject_model_and_limit(decided: Decided) -> None:
    alice = json.loads(
        cli(decided.stack, "predictions", "--subject", "alice-1003", "-o", "json").stdout
    )
    assert [d["record_id"] for d in alice] == list(reversed(decided.alice))
    one = cli(decided.stack, "predictions", "--limit", "1", "--output", "json")
    assert [d["record_id"] for d in json.loads(one.stdout)] == decided.bob
    none = cli(decided.stack, "predictions", "--model", "another", "--output", "json")
    assert none.exit_code == 0
    assert json.loads(none.stdout) == []
    nobody = cli(decided.stack, "predictions", "--subject", "nobody", "--output", "json")
    assert nobody.exit_code == 0
    assert json.loads(nobody.stdout) == []
    later = cli(decided.stack, "predictions", "--since", "2999-01-01", "--output", "json")
    assert json.loads(later.stdout) == []
    text = cli(decided.stack, "predictions", "--subject", "bob-17")
    assert text.exit_code == 0
    assert decided.bob[0] in text.stdout


def test_predictions_bad_input(decided: Decided) -> None:
    backwards = cli(decided.stack, "predictions", "--since", "2026-02-01", "--until", "2026-01-01")
    assert backwards.exit_code == 2
    assert "is not before" in backwards.stderr
    bad = cli(decided.stack, "predictions", "--limit", "0")
    assert bad.exit_code == 2
    wrong = cli(decided.stack, "predictions", "--model", "Bad Name", "--subject", "x")
    assert wrong.exit_code == 2
    assert "model_name" in wrong.stderr
