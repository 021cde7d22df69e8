"""The README's configuration table is generated from the code and cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from mrm.config_docs import markdown, parsed_toml_example

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def test_the_readme_holds_the_generated_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme, "README.md lacks the configuration reference markers"
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == markdown().strip(), "run `make docs` to regenerate the README table"


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = set(re.findall(r"`(MRM_[A-Z_]+)`", markdown()))
    used: set[str] = set()
    for root in ("services", "proxy", "clients/python"):
        for path in (ROOT / root).rglob("*.py"):
            used |= set(re.findall(r"\bMRM_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    assert used - documented == set()


def test_the_mrm_toml_example_is_valid_toml_with_every_table() -> None:
    example = parsed_toml_example()
    assert {"model", "data", "deploy", "gates"} <= example.keys()
