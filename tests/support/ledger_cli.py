"""`mrmctl` against a running ledger, for the end-to-end tests: run it, read its JSON,
append records in bulk, refresh the checkpoint, find the first bad leaf."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.client.ledger import LedgerClient, new_record


def cli(addr: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run mrmctl against the ledger at `addr`, in-process, as a user would."""
    return CliRunner().invoke(mrmctl, ["--ledger-addr", addr, *args], env=env)


def one_error(result: Result) -> str:
    """The single error line of a failed run (a first-use trust notice may precede it)."""
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("mrmctl: trusting")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mrmctl: error: ")
    return lines[0]


def ok_json(addr: str, *args: str) -> Any:
    result = cli(addr, *args, "--output", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def append_many(addr: str, n: int, *, start: int = 0, batch: int = 500, **fields: str) -> None:
    with LedgerClient(addr) as client:
        for lo in range(start, start + n, batch):
            client.append(
                [
                    new_record(
                        fields.get("kind", "PREDICTION"),
                        {"input": {"income": i, "ratio": 0.25}, "output": {"label": i % 2}},
                        model_name=fields.get("model_name", "credit-risk"),
                        model_version=fields.get("model_version", "1.2.4"),
                        subject=fields.get("subject", f"subject-{i % 7}"),
                    )
                    for i in range(lo, min(lo + batch, start + n))
                ]
            )


def refresh(addr: str) -> int:
    with LedgerClient(addr) as client:
        return client.checkpoint(refresh=True).tree_size


def first_bad_leaf(addr: str) -> dict[str, object]:
    """Run the full audit, expect it to fail, and return the leaf it names."""
    result = cli(addr, "ledger", "verify", "-o", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is False
    bad = report["first_bad_leaf"]
    assert isinstance(bad, dict)
    return bad
