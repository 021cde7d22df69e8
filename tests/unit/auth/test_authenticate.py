"""Authenticator.authenticate: a call's authorization metadata and client certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrm.core.auth import tokens
from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.config import AuthConfig
from mrm.core.auth.principal import ANONYMOUS, Method, Role
from mrm.core.errors import PermissionDenied, Unauthenticated
from tests.support.issuer import REF, REPOSITORY, Issuer
from tests.support.pki import Ca

PROXY_ID = "spiffe://mrm.test/ns/mrm/sa/proxy"
MTLS = f"""
[[mtls]]
identity = "{PROXY_ID}"
roles = ["proxy"]

[[mtls]]
identity = "spiffe://mrm.test/ns/ops/*"
roles = ["auditor"]
models = ["credit-*"]
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return Ca(tmp_path_factory.mktemp("pki"), "ca")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    with tokens.editing(path):
        pass
    return path


def _auth(tmp_path: Path, tokens_file: Path, toml: str = MTLS) -> Authenticator:
    (tmp_path / "auth.toml").write_text(toml)
    config = AuthConfig.load(tmp_path / "auth.toml")
    return Authenticator.create(enabled=True, tokens_file=tokens_file, config=config)


@pytest.fixture
def auth(tmp_path: Path, tokens_file: Path) -> Authenticator:
    return _auth(tmp_path, tokens_file)


def _issue(path: Path, *roles: str) -> str:
    with tokens.editing(path) as entries:
        token, _ = tokens.issue(entries, "ops@example.com", roles, issued_by="admin")
    return token


def _reason(auth: Authenticator, authorization: str | None, cert: bytes | None = None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        auth.authenticate(authorization, cert)
    return refused.value.reason


def test_no_credentials_is_credentials_missing_saying_what_to_send(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated) as refused:
        auth.authenticate(None, None)
    assert refused.value.reason == "CREDENTIALS_MISSING"
    assert "Bearer <token>" in refused.value.message
    assert _reason(auth, "", None) == "CREDENTIALS_MISSING"
    assert _reason(auth, None, b"") == "CREDENTIALS_MISSING"


@pytest.mark.parametrize(
    "authorization",
    ["Basic x", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token mrm_x", "Bearer hunter2"],
)
def test_anything_but_a_bearer_mrm_token_or_jwt_is_token_malformed(
    auth: Authenticator, authorization: str
) -> None:
    assert _reason(auth, authorization) == "TOKEN_MALFORMED"


def test_a_bearer_token_is_the_principal_it_was_issued_to(
    auth: Authenticator, tokens_file: Path
) -> None:
    token = _issue(tokens_file, "auditor")
    for authorization in (f"Bearer {token}", f"bearer {token}", f"  BEARER   {token}  "):
        who = auth.authenticate(authorization, None)
        assert (who.name, who.method, who.roles) == (
            "ops@example.com",
            Method.TOKEN,
            frozenset({Role.AUDITOR}),
        )


def test_an_mrm_token_not_in_the_file_is_token_unknown(auth: Authenticator) -> None:
    assert _reason(auth, f"Bearer {tokens.new_token()}") == "TOKEN_UNKNOWN"


def test_a_jwt_with_no_oidc_issuer_configured_is_refused_with_a_hint(
    auth: Authenticator, issuer: Issuer
) -> None:
    token = issuer.mint()
    with pytest.raises(Unauthenticated) as refused:
        auth.authenticate(f"Bearer {token}", None)
    assert refused.value.reason == "ID_TOKEN_INVALID"
    assert "trusts no OIDC issuer" in refused.value.message
    assert "MRM_AUTH_CONFIG_FILE" in refused.value.message
    assert token not in refused.value.message


def test_a_jwt_of_a_configured_issuer_is_its_ci_principal(
    tmp_path: Path, tokens_file: Path, issuer: Issuer
) -> None:
    auth = _auth(tmp_path, tokens_file, issuer.config_toml())
    who = auth.authenticate(f"Bearer {issuer.mint()}", None)
    assert (who.name, who.method) == (f"ci:{REPOSITORY}@{REF}", Method.OIDC)


def test_an_id_token_is_slow_to_verify_and_an_mrm_token_is_not(issuer: Issuer) -> None:
    assert Authenticator.is_slow(f"Bearer {issuer.mint()}")
    assert not Authenticator.is_slow(f"Bearer {tokens.new_token()}")
    assert not Authenticator.is_slow(None)


def test_a_certificate_whose_spiffe_id_is_mapped_is_that_principal(
    auth: Authenticator, ca: Ca
) -> None:
    pem = ca.issue("proxy", uri=PROXY_ID).cert.read_bytes()
    who = auth.authenticate(None, pem)
    assert (who.name, who.method, who.roles) == (PROXY_ID, Method.MTLS, frozenset({Role.PROXY}))
    assert who.models == ("*",)
    assert dict(who.claims) == {"san": PROXY_ID}


def test_a_certificate_matching_an_identity_glob_gets_its_roles_and_models(
    auth: Authenticator, ca: Ca
) -> None:
    spiffe = "spiffe://mrm.test/ns/ops/sa/dashboard"
    who = auth.authenticate(None, ca.issue("dashboard", uri=spiffe).cert.read_bytes())
    assert (who.name, who.roles, who.models) == (spiffe, frozenset({Role.AUDITOR}), ("credit-*",))


def test_an_unmapped_certificate_is_permission_denied_naming_it(
    auth: Authenticator, ca: Ca
) -> None:
    pem = ca.issue("stranger", uri="spiffe://mrm.test/ns/x/sa/y").cert.read_bytes()
    with pytest.raises(PermissionDenied, match=r"'spiffe://mrm.test/ns/x/sa/y' is valid but no"):
        auth.authenticate(None, pem)


def test_a_mapped_certificate_naming_no_valid_principal_is_refused(
    auth: Authenticator, ca: Ca
) -> None:
    # A SPIFFE ID may be 2048 bytes long; the glob maps it. An OIDC token mapping to
    # a name that is not valid_name() is PERMISSION_DENIED; a certificate must be too:
    # the name becomes the ledger's `actor` (a String(256) column).
    uri = "spiffe://mrm.test/ns/ops/" + "a" * 300
    pem = ca.issue("long", uri=uri).cert.read_bytes()
    with pytest.raises(PermissionDenied):
        auth.authenticate(None, pem)


def test_a_bearer_token_is_used_before_a_certificate(
    auth: Authenticator, tokens_file: Path, ca: Ca
) -> None:
    token = _issue(tokens_file, "deployer")
    pem = ca.issue("proxy2", uri=PROXY_ID).cert.read_bytes()
    assert auth.authenticate(f"Bearer {token}", pem).method is Method.TOKEN
    assert _reason(auth, "Basic x", pem) == "TOKEN_MALFORMED"


def test_with_authentication_off_every_caller_is_anonymous(tmp_path: Path) -> None:
    auth = Authenticator.create(enabled=False, tokens_file=tmp_path / "none", config=AuthConfig())
    assert not auth.enabled
    assert auth.tokens is None
    for authorization in (None, "Basic x", f"Bearer {tokens.new_token()}"):
        assert auth.authenticate(authorization, None) is ANONYMOUS


def test_a_missing_tokens_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no tokens file at .*mrm auth init"):
        Authenticator.create(enabled=True, tokens_file=tmp_path / "no.json", config=AuthConfig())


def test_a_broken_tokens_file_at_start_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{")
    with pytest.raises(ValueError, match=str(path)):
        Authenticator.create(enabled=True, tokens_file=path, config=AuthConfig())


def test_a_wrong_entry_in_the_tokens_file_at_start_names_the_file(
    tmp_path: Path, tokens_file: Path
) -> None:
    _issue(tokens_file, "auditor")
    doc = json.loads(tokens_file.read_text())
    doc["tokens"][0]["roles"] = ["superuser"]
    tokens_file.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"tokens\[0\]\.roles") as refused:
        Authenticator.create(enabled=True, tokens_file=tokens_file, config=AuthConfig())
    assert str(tokens_file) in str(refused.value)
