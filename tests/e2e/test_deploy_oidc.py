"""`mrmctl deploy` in a (simulated) GitHub Actions job: it asks the runner's token
service for the job's OIDC id-token, the registry verifies it against the issuer's
JWKS (served locally over HTTP: no network) and records the verified repository,
commit, ref, actor, workflow, run and token id on MODEL_INGESTED and DEPLOYMENT.
The CI's own variables stay beside it, marked unverified."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.client.credentials import ClientAuth
from mrm.client.errors import NotFound
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import TEST_TOKEN, issue
from tests.support.credit import project, tree_model
from tests.support.decisions import decide
from tests.support.inference import wait_ready
from tests.support.issuer import REPOSITORY, SHA, Issuer

PRINCIPAL = "ci:acme/credit@refs/heads/main"
SUITE = ClientAuth(TEST_TOKEN, None, "the test suite")  # not the job's environment


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningLedger, Issuer]]:
    tmp = tmp_path_factory.mktemp("oidc")
    issuer = Issuer(tmp / "issuer")
    with issuer.serving():
        (tmp / "auth.toml").write_text(issuer.config_toml(jwks="url"))
        stack = start_ledger(tmp / "home", auth_config_file=tmp / "auth.toml")
        try:
            yield stack, issuer
        finally:
            stack.stack.stop()


def _job(
    stack: RunningLedger,
    issuer: Issuer,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    *,
    sha: str = SHA,
    id_token: bool = True,
    env: dict[str, str] | None = None,
) -> Result:
    """What the job's `mrmctl deploy` step runs, with the runner's environment."""
    project(tmp, tree_model)
    monkeypatch.chdir(tmp)
    for var in ("MRM_TOKEN", "MRM_TOKEN_FILE", "MRM_OIDC_TOKEN", "MRM_OIDC_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    runner_env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SHA": sha,
        "GITHUB_ACTOR": "devin-gh",
        "GITHUB_REPOSITORY": REPOSITORY,
        "MRM_EXPLAIN_ADDR": stack.explain_addr,
        "MRM_HOME": str(tmp / "runner-home"),  # no local admin token to fall back on
        **(issuer.actions_env() if id_token else {}),
        **(env or {}),
    }
    for k, v in runner_env.items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(
        mrmctl,
        ["--ledger-addr", stack.addr, "--registry-addr", stack.registry_addr,
         "deploy", "model.pkl", "--version", version, "-o", "json"],
    )  # fmt: skip


def _one_error(result: Result) -> str:
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("mrmctl: error")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_ci_deploy_records_the_verified_job(
    ci: tuple[RunningLedger, Issuer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, issuer = ci
    issuer.claims_for_job = {"run_id": "9001"}
    done = _job(stack, issuer, tmp_path, monkeypatch, "2.0.0")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    with LedgerClient(stack.addr, auth=SUITE) as ledger:
        ingested = ledger.get_record(out["records"]["model_ingested"])
        deployment = ledger.get_record(out["records"]["deployment"])
    for record in (ingested, deployment):
        assert record.actor == PRINCIPAL
        identity = json.loads(record.body_json)["identity"]
        assert identity["method"] == "oidc"
        verified = identity["verified"]
        assert verified["repository"] == REPOSITORY
        assert verified["sha"] == SHA
        assert verified["ref"] == "refs/heads/main"
        assert verified["actor"] == "devin-gh"
        assert verified["run_id"] == "9001"
        assert verified["workflow_ref"].startswith(f"{REPOSITORY}/.github/workflows/deploy.yml")
        assert verified["jti"]
    assert json.loads(ingested.body_json)["identity"]["unverified"]["ci_actor"] == "devin-gh"
    # `models show` says who, how it was verified, and what is only claimed
    shown = CliRunner().invoke(
        mrmctl, ["--registry-addr", stack.registry_addr, "models", "show", "credit-risk"]
    )
    assert shown.exit_code == 0, shown.output
    assert f"{PRINCIPAL} (verified: oidc from {issuer.issuer})" in shown.stdout
    assert f"verified repository: {REPOSITORY}" in shown.stdout
    assert "unverified ci_actor: devin-gh (the caller's own claim)" in shown.stdout
    # legal's question: `why` and its report name the verified job
    rows = pd.read_csv(tmp_path / "eval.csv").drop(columns=["default"]).to_numpy()[:1]
    wait_ready(stack, "credit-risk")
    (decision,) = decide(stack, "credit-risk", rows, "applicant-oidc")
    monkeypatch.setenv("MRM_TOKEN", TEST_TOKEN)  # legal asks with its own credential
    why = CliRunner().invoke(
        mrmctl,
        ["--ledger-addr", stack.addr, "--registry-addr", stack.registry_addr,
         "why", decision, "--explain-addr", stack.explain_addr,
         "--report-file", str(tmp_path / "report.html")],
    )  # fmt: skip
    assert why.exit_code == 0, why.output
    assert f"model version registered by {PRINCIPAL} (verified: oidc" in why.stdout
    assert f"verified repository: {REPOSITORY}" in why.stdout
    assert f"verified sha: {SHA}" in why.stdout
    assert "verified actor: devin-gh" in why.stdout
    report = (tmp_path / "report.html").read_text()
    registered = report.split('id="registered-by">', 1)[1].split("</tr>", 1)[0]
    assert PRINCIPAL in registered
    assert "verified" in registered
    for claim in (f"<code>{REPOSITORY}</code>", f"<code>{SHA}</code>", "<code>devin-gh</code>"):
        assert claim in registered, claim
    assert 'ci_actor <span class="bad">unverified</span>' in report
    for token in issuer.minted:
        assert token not in done.output + shown.output + why.output + report
        assert token not in ingested.body_json + deployment.body_json


def test_a_deploy_from_another_commit_than_the_job_is_refused(
    ci: tuple[RunningLedger, Issuer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, issuer = ci
    issuer.claims_for_job = {}
    with LedgerClient(stack.addr, auth=SUITE) as ledger:
        before = ledger.checkpoint(refresh=True).tree_size
    done = _job(stack, issuer, tmp_path, monkeypatch, "2.0.1", sha="b" * 40)
    assert done.exit_code == 5, done.output
    error = _one_error(done)
    assert "source_commit" in error
    assert "verified id-token" in error
    with RegistryClient(stack.registry_addr, auth=SUITE) as reg, pytest.raises(NotFound):
        reg.get_version("credit-risk", "2.0.1")
    with LedgerClient(stack.addr, auth=SUITE) as ledger:
        assert ledger.checkpoint(refresh=True).tree_size == before


def test_without_an_id_token_the_ci_actor_is_only_a_claim(
    ci: tuple[RunningLedger, Issuer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, issuer = ci
    token = issue(stack.settings.resolved_tokens_file(), "ci-bot@acme.example", "deployer")
    done = _job(
        stack, issuer, tmp_path, monkeypatch, "2.0.2", id_token=False, env={"MRM_TOKEN": token}
    )
    assert done.exit_code == 0, done.output
    with LedgerClient(stack.addr, auth=SUITE) as ledger:
        ingested = ledger.get_record(json.loads(done.stdout)["records"]["model_ingested"])
    assert ingested.actor == "ci-bot@acme.example"
    identity = json.loads(ingested.body_json)["identity"]
    assert identity["method"] == "token"
    assert identity["verified"] == {}
    assert identity["unverified"]["ci_actor"] == "devin-gh"
    with RegistryClient(stack.registry_addr, auth=SUITE) as reg:
        version = reg.get_version("credit-risk", "2.0.2")
    assert version.created_by_identity.unverified_claims["ci_actor"] == "devin-gh"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "not-the-runner's"}, "id-token: write"),
        ({"MRM_OIDC_AUDIENCE": "someone-else"}, "audience"),
    ],
    ids=["request token refused", "wrong audience"],
)
def test_a_bad_id_token_is_one_line_and_deploys_nothing(
    ci: tuple[RunningLedger, Issuer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    said: str,
) -> None:
    stack, issuer = ci
    done = _job(stack, issuer, tmp_path, monkeypatch, "2.0.3", env=env)
    assert done.exit_code == 4, done.output
    assert said in _one_error(done)
    with RegistryClient(stack.registry_addr, auth=SUITE) as reg, pytest.raises(NotFound):
        reg.get_version("credit-risk", "2.0.3")
