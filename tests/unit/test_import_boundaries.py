"""Who may import whom in the `mrm` namespace.

A service (registry, ledger, explain, monitor, dashboard) and the proxy reach
the rest of MRM only through the server infrastructure (`mrm.core`), the shared
kernel (`mrm.kernel`), the verifier (`mrm.tlog`), the public SDK (`mrm.client`)
and the generated APIs (`mrm.v1`, `mrm.oip`): never another service's modules,
the proxy's, or the client-side deploy tooling. `mrm.core` imports no service;
the kernel imports only the verifier; nothing on the client side imports the
servers. The top-level modules of services/mrm (`mrm.stack`, `mrm.supervisor`,
`mrm admin`, …) are the composition root that starts every service and are not
checked here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services" / "mrm"
PROXY = ROOT / "proxy" / "mrm"
CLIENTS = ROOT / "clients" / "python" / "mrm"

SHARED = frozenset({"core", "kernel", "tlog", "client", "v1", "oip"})
"""What every service and the proxy may import besides their own package."""

RULES: Mapping[str, frozenset[str]] = {
    **{name: SHARED for name in ("registry", "ledger", "explain", "monitor", "dashboard", "proxy")},
    # The monitor compares live traffic with the reference profile that
    # `mrmctl deploy` built with the same statistics (mrm.drift), so the two
    # ends cannot disagree on a histogram's bins: a library shared by design,
    # as the verifier is, with no server or deploy code in it (see its rule).
    "monitor": SHARED | {"drift"},
    "core": frozenset({"kernel", "tlog", "client", "v1"}),
    "kernel": frozenset({"tlog"}),
    # The client side: the SDK, the verifier and the libraries mrmctl uses.
    "tlog": frozenset({"v1"}),
    "client": frozenset({"kernel", "tlog", "v1"}),
    "drift": frozenset({"kernel", "tlog", "v1"}),
    "evidence": frozenset({"client", "kernel", "tlog", "v1"}),
    "deploy": frozenset({"client", "drift", "kernel", "tlog", "v1"}),
    "cli": frozenset({"client", "deploy", "drift", "evidence", "kernel", "tlog", "v1"}),
}


def packages() -> Iterator[tuple[str, Path]]:
    for root in (SERVICES, PROXY, CLIENTS):
        for d in sorted(root.iterdir()):
            if d.is_dir() and d.name not in ("__pycache__", "v1", "oip") and any(d.rglob("*.py")):
                yield d.name, d


def imported(source: str) -> Iterator[tuple[int, str]]:
    """(line, the `mrm` package named) for every absolute import of `mrm.X…` in
    `source`, wherever it stands (in a function, under TYPE_CHECKING)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from mrm import kernel` names the package in the alias
            if node.module == "mrm":
                modules = [f"mrm.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "mrm" and len(parts) > 1:
                yield node.lineno, parts[1]


def violations(package: str, directory: Path) -> list[str]:
    allowed = RULES[package] | {package}
    found = []
    for path in sorted(directory.rglob("*.py")):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for line, name in imported(path.read_text()):
            if name not in allowed:
                found.append(f"{shown}:{line}: imports mrm.{name}")
    return found


def test_every_package_has_a_rule() -> None:
    assert sorted(name for name, _ in packages()) == sorted(RULES)


@pytest.mark.parametrize(("package", "directory"), list(packages()), ids=lambda v: str(v))
def test_imports_stay_within_the_package_boundaries(package: str, directory: Path) -> None:
    assert violations(package, directory) == []


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    (tmp_path / "decisions.py").write_text(
        "from mrm.kernel.subjects import SubjectHasher\n"
        "def late():\n"
        "    from mrm.proxy.audit import Stamper\n"
        "    from mrm import ledger\n"
        "    import mrm.deploy.schema\n"
    )
    assert [v.split(": ", 1)[1] for v in violations("explain", tmp_path)] == [
        "imports mrm.proxy",
        "imports mrm.ledger",
        "imports mrm.deploy",
    ]
