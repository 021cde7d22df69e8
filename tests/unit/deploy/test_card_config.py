"""The [card] table of mrm.toml: the model card recorded at deploy, parsed strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mrm.deploy.config import load_config
from mrm.deploy.errors import DeployError

HEAD = '[data]\neval = "eval.csv"\ntarget = "default"\n'


def card_of(tmp_path: Path, body: str) -> dict[str, Any]:
    path = tmp_path / "mrm.toml"
    path.write_text(body + HEAD)
    return load_config(tmp_path / "model.pkl", "1.0.0", {}, path).card


def test_a_full_card(tmp_path: Path) -> None:
    got = card_of(
        tmp_path,
        '[card]\npurpose = "Score applications"\nowner = "Risk team"\n'
        'intended_use = "Pre-screening"\nlimitations = "Not for business loans"\n'
        'risk_tier = "high"\nnotes = "Reviewed"\n',
    )
    assert got == {
        "purpose": "Score applications",
        "owner": "Risk team",
        "intended_use": "Pre-screening",
        "limitations": ["Not for business loans"],
        "risk_tier": "high",
        "notes": "Reviewed",
    }


def test_no_card_is_empty(tmp_path: Path) -> None:
    assert card_of(tmp_path, "") == {}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('[card]\nrisk_tier = "extreme"\n', "risk_tier = 'extreme'"),
        ("[card]\nowner = 3\n", "owner = 3"),
        ("[card]\nlimitations = [1]\n", "limitations"),
        ('[card]\npurpose = "x"\nowners = "y"\n', "owners"),
        ('card = "x"\n', "[card] must be a table"),
    ],
)
def test_bad_card_is_one_line_naming_the_setting(tmp_path: Path, body: str, names: str) -> None:
    with pytest.raises(DeployError) as e:
        card_of(tmp_path, body)
    assert names in str(e.value)
    assert "mrm.toml" in str(e.value)
    assert "\n" not in str(e.value)
