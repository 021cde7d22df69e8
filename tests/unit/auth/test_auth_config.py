"""The auth configuration (TOML): trusted OIDC issuers and client-certificate identities."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mrm.core.auth.config import GITHUB_CLAIMS, GITHUB_ISSUER, AuthConfig, Rule
from mrm.core.auth.principal import Role

REF = "refs/heads/main"

FULL = """
# GitHub Actions, as deploy/README shows it
[[oidc]]
issuer = "https://token.actions.githubusercontent.com"
audience = "mrm"
jwks_url = "https://token.actions.githubusercontent.com/.well-known/jwks"
principal = "ci:{repository}@{ref}"

[[oidc.rule]]
match = { repository = "acme/credit", ref = "refs/heads/main" }
roles = ["deployer"]
models = ["credit-*"]

[[oidc.rule]]
match = { repository = "acme/*" }
roles = ["auditor"]
principal = "ci-read:{repository}"

# GitLab: other claim names, several audiences, a key file, ES256 too
[[oidc]]
issuer = "https://gitlab.example.com"
audience = ["mrm", "https://mrm.example.com"]
jwks_file = "/etc/mrm/gitlab-jwks.json"
algorithms = ["RS256", "ES256"]
leeway_seconds = 5
principal = "gitlab:{project_path}@{ref}"
claims.repository = "project_path"
claims.sha = "sha"
claims.ref = "ref"
claims.actor = "user_login"
claims.workflow_ref = "ci_config_ref_uri"
claims.run_id = "pipeline_id"
claims.jti = "jti"

[[oidc.rule]]
match = { project_path = "acme/fraud", ref_protected = "true" }
roles = ["deployer", "auditor"]
models = ["fraud-*", "fraud"]

[[mtls]]
identity = "spiffe://acme.example/ns/mrm/sa/proxy"
roles = ["proxy"]

[[mtls]]
identity = "*.ops.acme.example"
roles = ["auditor"]
models = ["credit-*"]
"""


def _load(tmp_path: Path, text: str) -> AuthConfig:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    return AuthConfig.load(path)


def _mistake(tmp_path: Path, text: str) -> str:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="^" + re.escape(str(path))) as wrong:
        AuthConfig.load(path)
    return str(wrong.value)


def _issuer_toml(extra: str = "", rule: str = 'match = { ref = "x" }\nroles = ["deployer"]') -> str:
    return (
        f'[[oidc]]\nissuer = "https://ci.example"\naudience = "mrm"\n{extra}\n'
        f"[[oidc.rule]]\n{rule}\n"
    )


def test_no_file_means_nothing_beyond_the_tokens_file() -> None:
    assert AuthConfig.load(None) == AuthConfig()


def test_the_full_example_parses(tmp_path: Path) -> None:
    config = _load(tmp_path, FULL)
    github, gitlab = config.oidc
    assert github.issuer == GITHUB_ISSUER
    assert github.audiences == ("mrm",)
    assert github.jwks_url.endswith("/.well-known/jwks")
    assert github.jwks_file is None
    assert github.algorithms == ("RS256",)
    assert github.leeway_seconds == 30.0
    assert github.claims == GITHUB_CLAIMS
    assert github.rules == (
        Rule({"repository": "acme/credit", "ref": REF}, frozenset({Role.DEPLOYER}), ("credit-*",)),
        Rule({"repository": "acme/*"}, frozenset({Role.AUDITOR}), ("*",), "ci-read:{repository}"),
    )
    assert gitlab.audiences == ("mrm", "https://mrm.example.com")
    assert gitlab.jwks_file == Path("/etc/mrm/gitlab-jwks.json")
    assert gitlab.algorithms == ("RS256", "ES256")
    assert gitlab.leeway_seconds == 5.0
    assert gitlab.principal == "gitlab:{project_path}@{ref}"
    assert gitlab.claims["repository"] == "project_path"
    assert gitlab.claims["run_id"] == "pipeline_id"
    assert gitlab.rules[0].roles == {Role.DEPLOYER, Role.AUDITOR}
    assert gitlab.rules[0].models == ("fraud-*", "fraud")
    proxy, ops = config.mtls
    assert (proxy.identity, proxy.roles, proxy.models) == (
        "spiffe://acme.example/ns/mrm/sa/proxy",
        frozenset({Role.PROXY}),
        ("*",),
    )
    assert (ops.identity, ops.roles, ops.models) == (
        "*.ops.acme.example",
        frozenset({Role.AUDITOR}),
        ("credit-*",),
    )


def test_claims_may_be_one_inline_table(tmp_path: Path) -> None:
    config = _load(tmp_path, _issuer_toml('claims = { repository = "project_path", sha = "sha" }'))
    assert config.oidc[0].claims == {"repository": "project_path", "sha": "sha"}


def test_an_issuer_defaults_to_github_claims_and_an_oidc_principal(tmp_path: Path) -> None:
    issuer = _load(tmp_path, _issuer_toml()).oidc[0]
    assert issuer.claims == GITHUB_CLAIMS
    assert issuer.principal == "oidc:{sub}"
    assert issuer.jwks_url == ""
    assert issuer.jwks_file is None


def test_only_mtls_is_enough(tmp_path: Path) -> None:
    config = _load(tmp_path, '[[mtls]]\nidentity = "spiffe://x/y"\nroles = "proxy"\n')
    assert config.oidc == ()
    assert config.mtls[0].roles == {Role.PROXY}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[oidcs]\n", "oidcs: unknown section"),
        (_issuer_toml("colour = 'blue'"), "oidc[0].colour: unknown key"),
        (_issuer_toml("jwks = 'x'"), "oidc[0].jwks: unknown key"),
        (
            '[[mtls]]\nidentity = "x"\nroles = ["proxy"]\nrole = "admin"\n',
            "mtls[0].role: unknown key",
        ),
    ],
    ids=["section", "issuer key", "issuer key typo", "mtls key"],
)
def test_an_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in _mistake(tmp_path, text)


def test_an_unknown_key_in_a_rule_is_named(tmp_path: Path) -> None:
    # `model` for `models`: silently ignored, the rule would cover every model ("*")
    text = _issuer_toml(rule='match = { ref = "x" }\nroles = ["deployer"]\nmodel = ["credit-*"]')
    assert "oidc[0].rule[0].model: unknown key" in _mistake(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            _issuer_toml(rule='match = { ref = "x" }\nroles = ["root"]'),
            "oidc[0].rule[0].roles: 'root'",
        ),
        (_issuer_toml(rule='match = { ref = "x" }'), "oidc[0].rule[0].roles: at least one role"),
        (_issuer_toml(rule='match = { ref = "x" }\nroles = []'), "oidc[0].rule[0].roles"),
        ('[[mtls]]\nidentity = "x"\nroles = ["Proxy"]\n', "mtls[0].roles: 'Proxy' is not a role"),
        ('[[mtls]]\nidentity = "x"\n', "mtls[0].roles: at least one role"),
    ],
    ids=["unknown role", "no roles", "empty roles", "mtls unknown role", "mtls no roles"],
)
def test_a_bad_role_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in _mistake(tmp_path, text)


def test_a_missing_issuer_is_named(tmp_path: Path) -> None:
    text = (
        '[[oidc]]\naudience = "mrm"\n[[oidc.rule]]\nmatch = { ref = "x" }\nroles = ["deployer"]\n'
    )
    assert "oidc[0].issuer: is required" in _mistake(tmp_path, text)


def test_a_missing_audience_is_named(tmp_path: Path) -> None:
    text = _issuer_toml().replace('audience = "mrm"\n', "")
    assert "oidc[0].audience: is required" in _mistake(tmp_path, text)


def test_both_a_jwks_url_and_a_jwks_file_is_refused(tmp_path: Path) -> None:
    text = _issuer_toml('jwks_url = "https://ci.example/jwks"\njwks_file = "/etc/jwks.json"')
    message = _mistake(tmp_path, text)
    assert "oidc[0]: give jwks_url or jwks_file, not both" in message


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[[oidc]\n", "is not TOML"),
        ('[[oidc]]\nissuer = "https://x\n', "is not TOML"),
        ("a = 1\na = 2\n", "is not TOML"),
    ],
    ids=["bad table", "open string", "duplicate key"],
)
def test_bad_toml_is_named(tmp_path: Path, text: str, said: str) -> None:
    assert said in _mistake(tmp_path, text)


def test_a_file_that_is_not_utf8_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_bytes(b"[[mtls]]\nidentity = '\xff'\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))} is not TOML"):
        AuthConfig.load(path)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ValueError, match=f"^cannot read {re.escape(str(path))}"):
        AuthConfig.load(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("oidc = 1\n", "oidc: want [[oidc]] tables"),
        (
            '[[oidc]]\nissuer = "ci.example"\naudience = "mrm"\n',
            "oidc[0].issuer: 'ci.example' is not a URL",
        ),
        (_issuer_toml("audience = []").replace('audience = "mrm"\n', "", 1), "oidc[0].audience"),
        (_issuer_toml("algorithms = ['HS256']"), "oidc[0].algorithms: only public-key"),
        (_issuer_toml("algorithms = ['none']"), "oidc[0].algorithms"),
        (_issuer_toml("leeway_seconds = 601"), "oidc[0].leeway_seconds"),
        (_issuer_toml("leeway_seconds = -1"), "oidc[0].leeway_seconds"),
        (_issuer_toml("leeway_seconds = true"), "oidc[0].leeway_seconds"),
        (_issuer_toml("principal = 'ci:{repo-name}'"), "oidc[0].principal"),
        (_issuer_toml("principal = 'ci:{0}'"), "oidc[0].principal"),
        (_issuer_toml("claims = { repository = 1 }"), "oidc[0].claims"),
        (_issuer_toml("jwks_url = 7"), "oidc[0].jwks_url: want a string"),
        ('[[oidc]]\nissuer = "https://x"\naudience = "a"\n', "oidc[0].rule: at least one"),
        (_issuer_toml(rule='roles = ["deployer"]'), "oidc[0].rule[0].match: name at least one"),
        (_issuer_toml(rule='match = { ref = 1 }\nroles = ["deployer"]'), "oidc[0].rule[0].match"),
        (
            _issuer_toml(rule='match = {ref="x"}\nroles=["deployer"]\nmodels=[]'),
            "oidc[0].rule[0].models",
        ),
        (
            _issuer_toml(rule='match = {ref="x"}\nroles=["deployer"]\nprincipal="{a.b}"'),
            "oidc[0].rule[0].principal",
        ),
        ('[[mtls]]\nroles = ["proxy"]\n', "mtls[0].identity: is required"),
    ],
)
def test_each_other_mistake_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in _mistake(tmp_path, text)


def test_an_issuer_listed_twice_is_refused(tmp_path: Path) -> None:
    assert "listed twice" in _mistake(tmp_path, _issuer_toml() + _issuer_toml())


def test_the_error_names_the_second_issuer_by_its_index(tmp_path: Path) -> None:
    text = _issuer_toml().replace("ci.example", "a.example") + _issuer_toml("bogus = 1")
    assert "oidc[1].bogus: unknown key" in _mistake(tmp_path, text)
