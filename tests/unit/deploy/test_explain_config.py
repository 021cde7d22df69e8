"""The [explain] table of mrm.toml: adverse-action wording, parsed strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mrm.deploy.config import check_reason_features, load_config
from mrm.deploy.errors import DeployError

HEAD = '[data]\neval = "eval.csv"\ntarget = "default"\n[explain]\n'


def explain_of(tmp_path: Path, body: str) -> dict[str, Any]:
    path = tmp_path / "mrm.toml"
    path.write_text(HEAD + body)
    return load_config(tmp_path / "model.pkl", "1.0.0", {}, path).explain


def refused(tmp_path: Path, body: str) -> str:
    with pytest.raises(DeployError) as e:
        explain_of(tmp_path, body)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_reasons_and_an_explicit_favourable_label(tmp_path: Path) -> None:
    got = explain_of(
        tmp_path,
        'positive_label = "1"\nlabels = { "1" = "Rejected", "0" = "Approved" }\n'
        'favourable_label = "0"\nmax_reasons = 3\n'
        '[explain.reasons]\ndebt_to_income = "Debt is high relative to income"\n',
    )
    assert got["favourable_label"] == "0"
    assert got["reasons"] == {"debt_to_income": "Debt is high relative to income"}
    assert got["max_reasons"] == 3


def test_the_favourable_label_is_derived_and_stored(tmp_path: Path) -> None:
    got = explain_of(
        tmp_path, 'positive_label = 1\nlabels = { "1" = "Rejected", "0" = "Approved" }\n'
    )
    assert got["favourable_label"] == "0"
    assert "favourable_label" not in explain_of(tmp_path, 'positive_label = "1"\n')


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('reasons = "Debt"\n', "[explain] reasons in"),
        ("reasons = { debt_to_income = 3 }\n", "[explain] reasons.debt_to_income in"),
        ('reasons = { debt_to_income = " " }\n', "[explain] reasons.debt_to_income in"),
        ("favourable_label = true\n", "[explain] favourable_label = True"),
        (
            'labels = { "1" = "Rejected", "0" = "Approved" }\nfavourable_label = "2"\n',
            "[explain] favourable_label = '2'",
        ),
        ("max_reasons = 0\n", "[explain] max_reasons = 0"),
        ('max_reasons = "4"\n', "[explain] max_reasons = '4'"),
        ('favorable_label = "0"\n', "[explain] favorable_label in"),
    ],
)
def test_bad_wording_is_one_line_naming_the_key(tmp_path: Path, body: str, names: str) -> None:
    assert names in refused(tmp_path, body)


def test_reasons_name_inputs_of_the_model(tmp_path: Path) -> None:
    path = tmp_path / "mrm.toml"
    path.write_text(HEAD + '[explain.reasons]\nincome = "Income"\ndebt_ratio = "Debt"\n')
    cfg = load_config(tmp_path / "model.pkl", "1.0.0", {}, path)
    check_reason_features(cfg, ["debt_ratio", "income"])
    with pytest.raises(DeployError, match=r"^\[explain\] reasons\.debt_ratio in .*mrm\.toml: "):
        check_reason_features(cfg, ["income", "debt_to_income"])
