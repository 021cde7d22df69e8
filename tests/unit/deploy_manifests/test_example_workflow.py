"""examples/credit's GitHub Actions workflow: deploys with the job's verified identity."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[3] / "examples/credit/.github/workflows/deploy.yml"


def test_the_workflow_requests_an_id_token_and_holds_no_mrm_token() -> None:
    spec = yaml.safe_load(WORKFLOW.read_text())
    assert spec["permissions"] == {"contents": "read", "id-token": "write"}
    (job,) = spec["jobs"].values()
    assert job["env"]["MRM_OIDC_AUDIENCE"] == "mrm"  # the server's [[oidc]] audience
    assert "MRM_TOKEN" not in job["env"]  # the id-token is the credential
    steps = " ".join(step.get("run", "") for step in job["steps"])
    assert "mrmctl deploy" in steps
    assert '--source-commit "$GITHUB_SHA"' in steps  # the commit the id-token names
