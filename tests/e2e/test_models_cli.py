"""`mrmctl models`, `promote` and `rollback` against a real registry and ledger."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.client.registry import RegistryClient
from mrm.v1 import registry_pb2 as pb
from tests.conftest import RunningLedger


def run(stack: RunningLedger, *args: str) -> Result:
    return CliRunner().invoke(
        mrmctl, ["--ledger-addr", stack.addr, "--registry-addr", stack.registry_addr, *args]
    )


def seed(stack: RunningLedger) -> None:
    with RegistryClient(stack.registry_addr) as reg:
        reg.create_model("credit-risk", "scores applications")
        for v in ("1.0.0", "1.1.0"):
            art = reg.upload(v.encode(), "application/onnx").artifact
            reg.register(
                pb.ModelVersion(
                    model_name="credit-risk",
                    version=v,
                    artifacts=[pb.ArtifactRef(role=pb.ARTIFACT_ROLE_ONNX_MODEL, sha256=art.sha256)],
                    sample_rate=1.0,
                )
            )


def test_promote_rollback_and_history(ledger_server: RunningLedger) -> None:
    seed(ledger_server)
    assert (
        run(ledger_server, "promote", "credit-risk", "1.0.0", "--stage", "production").exit_code
        == 0
    )
    up = run(
        ledger_server, "promote", "credit-risk", "1.1.0", "--stage", "production", "-o", "json"
    )
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout)["demoted_version"] == "1.0.0"
    back = run(ledger_server, "rollback", "credit-risk", "-o", "json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["version"] == "1.0.0"
    shown = json.loads(run(ledger_server, "models", "show", "credit-risk", "-o", "json").stdout)
    assert shown["production_version"] == "1.0.0"
    assert [(c["version"], c["stage"]) for c in shown["history"]] == [
        ("1.0.0", "production"),
        ("1.0.0", "staging"),
        ("1.1.0", "production"),
        ("1.1.0", "staging"),
        ("1.0.0", "production"),
    ]
    listed = json.loads(run(ledger_server, "models", "list", "-o", "json").stdout)
    assert listed[0]["staging_versions"] == ["1.1.0"]
    text = run(ledger_server, "models", "show", "credit-risk")
    assert "stage history" in text.stdout
    one = json.loads(
        run(
            ledger_server, "models", "show", "credit-risk", "--version", "1.1.0", "-o", "json"
        ).stdout
    )
    assert one["stage"] == "staging"


def test_errors_are_one_line(ledger_server: RunningLedger) -> None:
    seed(ledger_server)
    cases = [
        (("rollback", "credit-risk"), 2, "no earlier production version"),
        (("promote", "credit-risk", "9.9.9", "--stage", "production"), 2, "not registered"),
        (("promote", "credit-risk", "1.0", "--stage", "staging"), 2, "not semver"),
        (("models", "show", "nope"), 2, "not registered"),
        (("promote", "credit-risk", "1.0.0", "--stage", "nowhere"), 2, "nowhere"),
    ]
    for args, code, text in cases:
        result = run(ledger_server, *args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_registry_unreachable_is_exit_3() -> None:
    result = CliRunner().invoke(
        mrmctl, ["--registry-addr", "127.0.0.1:9", "--timeout", "2", "models", "list"]
    )
    assert result.exit_code == 3
    assert "cannot reach the registry" in result.stderr
