"""OIDC id-tokens (a CI job's identity) and the auth configuration that trusts them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mrm.core.auth.config import AuthConfig
from mrm.core.auth.oidc import OidcVerifier
from mrm.core.auth.principal import Method, Role
from mrm.core.errors import PermissionDenied, Unauthenticated
from tests.support.issuer import ISSUER, REPOSITORY, SHA, Issuer


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


def _verifier(issuer: Issuer, tmp: Path, toml: str | None = None) -> OidcVerifier:
    (tmp / "auth.toml").write_text(toml or issuer.config_toml())
    return OidcVerifier(AuthConfig.load(tmp / "auth.toml").oidc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refusal(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        verifier.authenticate(token)
    assert refused.value.reason in ("ID_TOKEN_INVALID", "TOKEN_MALFORMED")
    assert token not in refused.value.message
    return refused.value.message


def test_a_valid_job_token_is_a_deployer_with_its_claims(issuer: Issuer, tmp_path: Path) -> None:
    who = _verifier(issuer, tmp_path).authenticate(issuer.mint(run_id="77"))
    assert who.name == f"ci:{REPOSITORY}@refs/heads/main"
    assert who.method is Method.OIDC
    assert who.roles == {Role.DEPLOYER}
    assert who.models == ("credit-*",)
    assert who.issuer == ISSUER
    assert who.claims["sha"] == SHA
    assert who.claims["run_id"] == "77"
    assert {"repository", "ref", "actor", "workflow_ref", "jti"} <= who.claims.keys()


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.example"}, "not one this server trusts"),
        ({"sub": None}, "'sub'"),
    ],
    ids=["expired", "not yet valid", "wrong audience", "wrong issuer", "no sub"],
)
def test_a_bad_id_token_is_refused_saying_why(
    issuer: Issuer, tmp_path: Path, claims: dict[str, Any], said: str
) -> None:
    assert said in _refusal(_verifier(issuer, tmp_path), issuer.mint(None, None, **claims))


def test_leeway_allows_a_little_clock_skew(issuer: Issuer, tmp_path: Path) -> None:
    verifier = _verifier(issuer, tmp_path)
    just_expired = issuer.mint(exp=int(time.time()) - 5, iat=int(time.time()) - 600)
    assert verifier.authenticate(just_expired).name.startswith("ci:")


def test_forged_signatures_are_refused(issuer: Issuer, tmp_path: Path) -> None:
    verifier = _verifier(issuer, tmp_path)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in _refusal(verifier, issuer.mint(key=stranger))
    assert "does not hold" in _refusal(verifier, issuer.mint(kid="unknown-kid"))
    # alg=none, and HS256 keyed with the public key (the classic confusion attack)
    unsigned = jwt.encode(issuer.claims(), "", algorithm="none", headers={"kid": issuer.kid})
    assert "'none'" in _refusal(verifier, unsigned)
    public_pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = _b64(json.dumps(issuer.claims()).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}.{_b64(mac)}"
    assert "HS256" in _refusal(verifier, forged)
    assert "readable JWT" in _refusal(verifier, "eyJhbGciOi.eyJzdWIi.garbage")


def test_no_matching_rule_is_permission_denied_naming_the_claims(
    issuer: Issuer, tmp_path: Path
) -> None:
    with pytest.raises(PermissionDenied) as refused:
        _verifier(issuer, tmp_path).authenticate(issuer.mint(repository="mallory/fork"))
    assert "repository" in refused.value.message
    assert "mallory/fork" in refused.value.message


def test_keys_come_from_the_issuers_jwks_url(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "issuer")
    with issuer.serving():
        verifier = _verifier(issuer, tmp_path, issuer.config_toml(jwks="url"))
        assert verifier.authenticate(issuer.mint()).method is Method.OIDC
        # a key the issuer never published is refused (PyJWT refetches the JWKS for
        # an unknown key id at most every 30 s, so a rotation is seen by then)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert "signing key" in _refusal(verifier, issuer.mint(key=stranger, kid="k-9"))


def test_a_jwks_file_is_reread_when_the_issuer_rotates_its_key(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "issuer")
    verifier = _verifier(issuer, tmp_path)
    assert verifier.authenticate(issuer.mint()).method is Method.OIDC
    issuer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.kid = "test-key-2"
    time.sleep(0.01)
    issuer.jwks_file.write_text(json.dumps(issuer.jwks()))  # the new key, published
    assert verifier.authenticate(issuer.mint()).method is Method.OIDC


def test_a_gitlab_style_issuer_maps_its_own_claim_names(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "gl", issuer="https://gitlab.example")
    toml = f"""
[[oidc]]
issuer = "https://gitlab.example"
audience = ["mrm", "other"]
jwks_file = "{issuer.jwks_file}"
principal = "ci:{{repository}}@{{ref}}"
claims.repository = "project_path"
claims.actor = "user_login"
claims.workflow_ref = "ci_config_ref_uri"
claims.run_id = "pipeline_id"
claims.sha = "sha"
claims.ref = "ref"
claims.jti = "jti"

[[oidc.rule]]
match = {{ repository = "acme/*" }}
roles = ["deployer", "auditor"]
"""
    token = issuer.mint(
        project_path="acme/credit", user_login="devin", pipeline_id=5, ci_config_ref_uri="x"
    )
    who = _verifier(issuer, tmp_path, toml).authenticate(token)
    assert who.name == "ci:acme/credit@refs/heads/main"
    assert who.claims["repository"] == "acme/credit"
    assert who.claims["actor"] == "devin"
    assert who.claims["run_id"] == "5"
    assert who.roles == {Role.DEPLOYER, Role.AUDITOR}


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[[oidc]]\naudience = 'mrm'\n", "oidc[0].issuer"),
        (
            "[[oidc]]\nissuer = 'https://x'\n[[oidc.rule]]\nmatch = {ref = 'x'}\n"
            "roles = ['deployer']\n",
            "audience",
        ),
        ("[[oidc]]\nissuer = 'https://x'\naudience = 'a'\n", "oidc[0].rule"),
        ("[[oidc]]\nissuer = 'https://x'\naudience = 'a'\ncolour = 1\n", "colour"),
        ("[[mtls]]\nidentity = 'spiffe://x'\nroles = ['root']\n", "root"),
        ("[[oidcs]]\n", "unknown section"),
        ("[[oidc\n", "is not TOML"),
    ],
)
def test_a_wrong_auth_config_names_the_file_and_the_key(
    tmp_path: Path, toml: str, said: str
) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=re.escape(str(path))) as wrong:
        AuthConfig.load(path)
    assert str(path) in str(wrong.value)
    assert said in str(wrong.value)
