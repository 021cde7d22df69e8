"""The reproducibility check catches an archived artifact swapped on disk."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from mrm.client.errors import FailedPrecondition
from mrm.client.explain import ExplainClient
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient, role_name
from tests.conftest import RunningLedger
from tests.support.credit import regressor
from tests.support.decisions import decide, deploy_explained


def artifact_path(running_stack: RunningLedger, sha256: str) -> Path:
    return running_stack.settings.home / "artifacts" / "sha256" / sha256[:2] / sha256


@pytest.mark.parametrize("role", ["onnx_model", "background_sample"])
def test_swapped_artifact_is_failed_precondition(
    running_stack: RunningLedger, tmp_path: Path, role: str
) -> None:
    _, X, _ = deploy_explained(running_stack, tmp_path / "a")
    # A second, different model: its ONNX bytes are what an attacker swaps in.
    deploy_explained(
        running_stack, tmp_path / "b", regressor, name="loss", version="1.0.0", explain={}
    )
    (decision,) = decide(running_stack, "credit-risk", X.iloc[:1].to_numpy(), "applicant-7")
    with ExplainClient(running_stack.explain_addr) as ex:
        assert ex.explain_record(decision).reproduction.matches  # fine before the swap
    with RegistryClient(running_stack.registry_addr) as reg:
        mine = {role_name(a.role): a.sha256 for a in reg.get_version("credit-risk").artifacts}
        other = {role_name(a.role): a.sha256 for a in reg.get_version("loss").artifacts}
    path = artifact_path(running_stack, mine[role])
    path.chmod(0o644)
    path.write_bytes(artifact_path(running_stack, other[role]).read_bytes())
    with LedgerClient(running_stack.addr) as led:
        before = len(list(led.query(kind="EXPLANATION")))
    with ExplainClient(running_stack.explain_addr) as ex:
        with pytest.raises(FailedPrecondition) as info:
            ex.explain_record(decision)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "TAMPERING" in info.value.message
        assert mine[role] in info.value.message
    with LedgerClient(running_stack.addr) as led:
        after = list(led.query(kind="EXPLANATION"))
    assert len(after) == before  # nothing computed from tampered bytes is recorded
    assert all(json.loads(r.body_json)["reproduction"]["matches"] for r in after)
