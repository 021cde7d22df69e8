"""OidcVerifier: a CI job's id-token checked against its issuer's keys and mapped by rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import types
from pathlib import Path
from typing import Any

import jwt
import jwt.jwks_client
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mrm.core.auth.config import AuthConfig
from mrm.core.auth.oidc import OidcVerifier, looks_like_jwt
from mrm.core.auth.principal import Method, Role
from mrm.core.errors import PermissionDenied, Unauthenticated, Unavailable
from tests.support.issuer import AUDIENCE, ISSUER, REF, REPOSITORY, SHA, Issuer

READ_RULE = """
[[oidc.rule]]
match = { repository = "acme/*" }
roles = ["auditor"]
principal = "ci-read:{repository}"
"""


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def stranger() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _verifier(tmp: Path, toml: str) -> OidcVerifier:
    path = tmp / "auth.toml"
    path.write_text(toml)
    return OidcVerifier(AuthConfig.load(path).oidc)


@pytest.fixture
def verifier(issuer: Issuer, tmp_path: Path) -> OidcVerifier:
    return _verifier(tmp_path, issuer.config_toml() + READ_RULE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(verifier: OidcVerifier, token: str, reason: str = "ID_TOKEN_INVALID") -> str:
    with pytest.raises(Unauthenticated) as refused:
        verifier.authenticate(token)
    assert refused.value.reason == reason
    assert token not in refused.value.message
    return refused.value.message


def _with_leeway(issuer: Issuer, seconds: int) -> str:
    return issuer.config_toml().replace(
        f'audience = "{AUDIENCE}"\n', f'audience = "{AUDIENCE}"\nleeway_seconds = {seconds}\n'
    )


def test_a_valid_token_is_named_by_the_template_with_the_first_rules_roles(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    who = verifier.authenticate(issuer.mint())
    assert who.name == f"ci:{REPOSITORY}@{REF}"
    assert who.method is Method.OIDC
    assert who.issuer == ISSUER
    assert who.roles == {Role.DEPLOYER}  # the second rule matches too: the first wins
    assert who.models == ("credit-*",)


def test_a_later_rule_applies_when_the_first_does_not_match_with_its_own_template(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    who = verifier.authenticate(issuer.mint(ref="refs/heads/feature"))
    assert who.name == f"ci-read:{REPOSITORY}"
    assert who.roles == {Role.AUDITOR}
    assert who.models == ("*",)


def test_the_verified_claims_are_recorded(issuer: Issuer, verifier: OidcVerifier) -> None:
    token = issuer.mint(jti="job-1", run_id=4242, actor="devin-gh", environment="prod")
    who = verifier.authenticate(token)
    assert dict(who.claims) == {
        "repository": REPOSITORY,
        "sha": SHA,
        "ref": REF,
        "actor": "devin-gh",
        "workflow_ref": f"{REPOSITORY}/.github/workflows/deploy.yml@{REF}",
        "run_id": "4242",  # a number claim, recorded as text
        "jti": "job-1",
        "sub": f"repo:{REPOSITORY}:ref:{REF}",
    }  # only the configured claims (and sub): not `environment`


def test_the_principal_expires_with_the_token(issuer: Issuer, verifier: OidcVerifier) -> None:
    exp = int(time.time()) + 300
    assert verifier.authenticate(issuer.mint(exp=exp)).expires_at_us == exp * 1_000_000


def test_an_audience_list_holding_ours_is_accepted(issuer: Issuer, verifier: OidcVerifier) -> None:
    assert verifier.authenticate(issuer.mint(aud=["other", AUDIENCE])).name.startswith("ci:")


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        ({"exp": -3600, "iat": -7200, "nbf": -7200}, "it has expired"),
        ({"nbf": 3600}, "not valid yet"),
        ({"iat": 3600}, "not valid yet"),
        ({"aud": "someone-else"}, "its audience (aud) is not mrm"),
        ({"aud": ["a", "b"]}, "its audience (aud) is not mrm"),
        ({"sub": None}, "it has no 'sub' claim"),
        ({"exp": None}, "it has no 'exp' claim"),
        ({"iat": None}, "it has no 'iat' claim"),
        ({"aud": None}, "it has no 'aud' claim"),
    ],
    ids=[
        "expired",
        "nbf future",
        "iat future",
        "wrong aud",
        "aud list",
        "no sub",
        "no exp",
        "no iat",
        "no aud",
    ],
)
def test_a_token_failing_a_claim_check_is_id_token_invalid(
    issuer: Issuer, verifier: OidcVerifier, claims: dict[str, Any], said: str
) -> None:
    now = int(time.time())
    times = {k: now + v for k, v in claims.items() if k in ("exp", "iat", "nbf") and v is not None}
    token = issuer.mint(**(claims | times))
    assert said in _refused(verifier, token)


def test_a_token_of_an_issuer_not_trusted_is_refused_naming_the_trusted_ones(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    message = _refused(verifier, issuer.mint(iss="https://evil.example"))
    assert "'https://evil.example' is not one this server trusts" in message
    assert ISSUER in message


def test_a_token_with_no_issuer_is_refused(issuer: Issuer, verifier: OidcVerifier) -> None:
    assert "issuer None" in _refused(verifier, issuer.mint(iss=None))


def test_a_key_id_the_jwks_does_not_hold_is_refused(issuer: Issuer, verifier: OidcVerifier) -> None:
    assert "signed by key 'rotated-away'" in _refused(verifier, issuer.mint(kid="rotated-away"))


def test_a_signature_by_another_key_is_refused(
    issuer: Issuer, verifier: OidcVerifier, stranger: rsa.RSAPrivateKey
) -> None:
    assert "signature does not verify" in _refused(verifier, issuer.mint(key=stranger))


def test_a_token_whose_claims_were_changed_after_signing_is_refused(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    head, _, sig = issuer.mint(ref="refs/heads/feature").split(".")
    body = _b64(json.dumps(issuer.claims()).encode())  # now claims refs/heads/main
    assert "signature does not verify" in _refused(verifier, f"{head}.{body}.{sig}")


def test_an_unsigned_token_alg_none_is_refused(issuer: Issuer, verifier: OidcVerifier) -> None:
    unsigned = jwt.encode(issuer.claims(), "", algorithm="none", headers={"kid": issuer.kid})
    assert "signed with 'none'" in _refused(verifier, unsigned)


def test_hs256_keyed_with_the_public_key_is_refused(issuer: Issuer, verifier: OidcVerifier) -> None:
    public_pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = _b64(json.dumps(issuer.claims()).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert "signed with 'HS256'" in _refused(verifier, f"{head}.{body}.{_b64(mac)}")


def _with_an_ec_key(issuer: Issuer) -> dict[str, Any]:
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwks = issuer.jwks()
    jwks["keys"].append(json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_public)) | {"kid": "ec-1"})
    return jwks


def test_a_token_naming_a_key_of_another_type_in_a_jwks_file_is_refused(
    issuer: Issuer, tmp_path: Path
) -> None:
    # An issuer's JWKS may hold EC keys beside RSA ones (key rotation, several
    # algorithms). Anyone can send an RS256 token naming the EC key's kid: that is
    # a refusal (ID_TOKEN_INVALID), not a TypeError escaping from PyJWT.
    mixed = tmp_path / "mixed-jwks.json"
    mixed.write_text(json.dumps(_with_an_ec_key(issuer)))
    verifier = _verifier(tmp_path, issuer.config_toml().replace(str(issuer.jwks_file), str(mixed)))
    assert verifier.authenticate(issuer.mint()).name.startswith("ci:")  # the RSA key works
    _refused(verifier, issuer.mint(kid="ec-1"))


def test_a_token_naming_a_key_of_another_type_at_the_jwks_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = Issuer(tmp_path / "issuer")
    mixed = _with_an_ec_key(issuer)
    monkeypatch.setattr(issuer, "jwks", lambda: mixed)
    with issuer.serving():
        verifier = _verifier(tmp_path, issuer.config_toml(jwks="url"))
        assert verifier.authenticate(issuer.mint()).name.startswith("ci:")
        _refused(verifier, issuer.mint(kid="ec-1"))


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOi.eyJzdWIi.garbage",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",  # the payload is not JSON
        "eyJhbGciOiJSUzI1NiJ9.WzEsMl0.c2ln",  # the payload is a list
    ],
)
def test_garbage_is_token_malformed(verifier: OidcVerifier, token: str) -> None:
    assert "not a readable JWT" in _refused(verifier, token, "TOKEN_MALFORMED")


def test_no_matching_rule_is_permission_denied_naming_the_claims(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    with pytest.raises(PermissionDenied) as refused:
        verifier.authenticate(issuer.mint(repository="mallory/fork", ref=None))
    message = refused.value.message
    assert "repository=mallory/fork" in message
    assert "ref=(none)" in message
    assert ISSUER in message
    assert f"repo:{REPOSITORY}:ref:{REF}" in message  # the sub


def test_a_template_needing_a_claim_the_token_lacks_is_permission_denied(
    issuer: Issuer, tmp_path: Path
) -> None:
    toml = issuer.config_toml().replace("ci:{repository}@{ref}", "ci:{environment}")
    with pytest.raises(PermissionDenied, match="needs the claim 'environment'"):
        _verifier(tmp_path, toml).authenticate(issuer.mint())


def test_a_template_yielding_a_bad_principal_name_is_permission_denied(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    with pytest.raises(PermissionDenied, match="not a principal name"):
        verifier.authenticate(issuer.mint(repository="acme/has space", ref="x"))


def test_the_default_leeway_allows_30_seconds_of_skew(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    now = int(time.time())
    assert verifier.authenticate(issuer.mint(exp=now - 20, iat=now - 600, nbf=now - 600))
    assert verifier.authenticate(issuer.mint(nbf=now + 20, iat=now))
    late = issuer.mint(exp=now - 45, iat=now - 600, nbf=now - 600)
    assert "expired" in _refused(verifier, late)


def test_the_configured_leeway_is_honored(issuer: Issuer, tmp_path: Path) -> None:
    strict = _verifier(tmp_path, _with_leeway(issuer, 0))
    now = int(time.time())
    assert "expired" in _refused(strict, issuer.mint(exp=now - 2, iat=now - 600, nbf=now - 600))
    assert "not valid yet" in _refused(strict, issuer.mint(nbf=now + 20))
    generous = _verifier(tmp_path, _with_leeway(issuer, 120))
    assert generous.authenticate(issuer.mint(exp=now - 90, iat=now - 600, nbf=now - 600))


def test_a_missing_jwks_file_is_unavailable_naming_it(issuer: Issuer, tmp_path: Path) -> None:
    gone = tmp_path / "gone.json"
    verifier = _verifier(tmp_path, issuer.config_toml().replace(str(issuer.jwks_file), str(gone)))
    with pytest.raises(Unavailable, match=str(gone)):
        verifier.authenticate(issuer.mint())


def test_no_issuers_is_not_configured() -> None:
    assert not OidcVerifier(()).configured


def test_looks_like_jwt(issuer: Issuer) -> None:
    assert looks_like_jwt(issuer.mint())
    assert not looks_like_jwt("mrm_" + "a" * 43)
    assert not looks_like_jwt("a.b.c")
    assert not looks_like_jwt("eyJ.eyJ")


def test_keys_are_fetched_from_the_jwks_url(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path / "issuer")
    with issuer.serving():
        verifier = _verifier(tmp_path, issuer.config_toml(jwks="url"))
        who = verifier.authenticate(issuer.mint())
    assert (who.method, who.name) == (Method.OIDC, f"ci:{REPOSITORY}@{REF}")


def test_a_rotated_key_is_picked_up_from_the_jwks_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = Issuer(tmp_path / "issuer")
    with issuer.serving():
        verifier = _verifier(tmp_path, issuer.config_toml(jwks="url"))
        assert verifier.authenticate(issuer.mint()).method is Method.OIDC
        issuer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer.kid = "test-key-2"  # the issuer now publishes only the new key
        # PyJWT refetches for an unknown kid at most every 30 s: let that time pass
        real = time.monotonic
        later = types.SimpleNamespace(monotonic=lambda: real() + 31)
        monkeypatch.setattr(jwt.jwks_client, "time", later)
        assert verifier.authenticate(issuer.mint()).method is Method.OIDC


def test_an_unreachable_discovery_document_is_unavailable_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    issuer = Issuer(tmp_path / "issuer", issuer=f"http://127.0.0.1:{port}")
    toml = issuer.config_toml().replace(f'jwks_file = "{issuer.jwks_file}"\n', "")
    with pytest.raises(Unavailable, match="set jwks_url or jwks_file"):
        _verifier(tmp_path, toml).authenticate(issuer.mint())
