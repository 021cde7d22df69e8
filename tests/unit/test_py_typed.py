"""PEP 561: the `mrm` namespace's packages say they are typed (a `py.typed` in each,
as a namespace package needs), so mypy checks code that imports the SDK."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_of_the_wheel_ships_py_typed() -> None:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = spec["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    packages = [
        d
        for root in roots
        for d in sorted((ROOT / root).iterdir())
        if d.is_dir() and d.name != "__pycache__" and any(d.rglob("*.py"))
    ]
    assert len(packages) >= 11
    missing = [str(d.relative_to(ROOT)) for d in packages if not (d / "py.typed").is_file()]
    assert missing == []
