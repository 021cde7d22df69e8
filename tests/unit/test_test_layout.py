"""Test modules share helpers through tests/support, never by importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUITES = ("e2e", "integration", "unit")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_test_module_imports_from_another_suite_module() -> None:
    forbidden = tuple(f"tests.{suite}" for suite in SUITES)
    offenders = [
        f"{path.relative_to(TESTS.parent)} imports {module}"
        for suite in SUITES
        for path in sorted((TESTS / suite).rglob("*.py"))
        for module in _imported_modules(path)
        if module in forbidden or module.startswith(tuple(f"{f}." for f in forbidden))
    ]
    assert offenders == [], "move shared helpers to tests/support:\n" + "\n".join(offenders)
