"""What a call carries turned into a principal, and who may call what."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mrm.core.auth import policy, tokens
from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.config import AuthConfig
from mrm.core.auth.http import Sessions, _safe_next
from mrm.core.auth.principal import ANONYMOUS, Method, Role
from mrm.core.errors import PermissionDenied, Unauthenticated
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.v1 import auth_pb2, explain_pb2, ledger_pb2, proxy_pb2, registry_pb2
from tests.support.issuer import Issuer
from tests.support.pki import Ca

SPIFFE = "spiffe://mrm.test/ns/mrm/sa/proxy"


@pytest.fixture
def authenticator(tmp_path: Path) -> tuple[Authenticator, str, Path]:
    path = tmp_path / "tokens.json"
    with tokens.editing(path) as entries:
        token, _ = tokens.issue(entries, "ops@example.com", ("auditor",), issued_by="admin")
    (tmp_path / "auth.toml").write_text(f'[[mtls]]\nidentity = "{SPIFFE}"\nroles = ["proxy"]\n')
    config = AuthConfig.load(tmp_path / "auth.toml")
    return Authenticator.create(enabled=True, tokens_file=path, config=config), token, path


def _reason(auth: Authenticator, authorization: str | None, cert: bytes | None = None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        auth.authenticate(authorization, cert)
    return refused.value.reason


def test_each_kind_of_missing_or_malformed_credential(
    authenticator: tuple[Authenticator, str, Path],
) -> None:
    auth, token, _ = authenticator
    assert auth.authenticate(f"Bearer {token}", None).name == "ops@example.com"
    assert auth.authenticate(f"bearer  {token} ", None).roles == {Role.AUDITOR}
    assert _reason(auth, None) == "CREDENTIALS_MISSING"
    assert _reason(auth, "Basic dXNlcjpwYXNz") == "TOKEN_MALFORMED"
    assert _reason(auth, "Bearer ") == "TOKEN_MALFORMED"
    assert _reason(auth, "Bearer hunter2") == "TOKEN_MALFORMED"
    jwt_like = Issuer(Path(auth.tokens.path).parent / "iss").mint()  # type: ignore[union-attr]
    with pytest.raises(Unauthenticated, match="trusts no OIDC issuer"):
        auth.authenticate(f"Bearer {jwt_like}", None)


def test_a_client_certificate_is_a_principal_only_when_mapped(
    authenticator: tuple[Authenticator, str, Path], tmp_path: Path
) -> None:
    auth, _, _ = authenticator
    ca = Ca(tmp_path / "pki", "ca")
    mapped = ca.issue("proxy", uri=SPIFFE).cert.read_bytes()
    who = auth.authenticate(None, mapped)
    assert (who.name, who.method, who.roles) == (SPIFFE, Method.MTLS, frozenset({Role.PROXY}))
    assert who.claims == {"san": SPIFFE}
    other = ca.issue("other", uri="spiffe://mrm.test/ns/x/sa/y").cert.read_bytes()
    with pytest.raises(PermissionDenied, match="no \\[\\[mtls\\]\\] identity"):
        auth.authenticate(None, other)


def test_with_authentication_off_everyone_is_anonymous(tmp_path: Path) -> None:
    auth = Authenticator.create(enabled=False, tokens_file=tmp_path / "x", config=AuthConfig())
    assert auth.authenticate(None, None) is ANONYMOUS


def test_a_missing_tokens_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mrm auth init"):
        Authenticator.create(enabled=True, tokens_file=tmp_path / "no", config=AuthConfig())


def test_every_rpc_of_every_service_has_a_decided_policy() -> None:
    for module in (ledger_pb2, registry_pb2, explain_pb2, proxy_pb2, auth_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                assert path in policy.TABLE, f"{path} has no entry in the access policy"
                assert policy.TABLE[path], f"{path} is open to no role"
    assert policy.required_roles("/grpc.health.v1.Health/Check", inference_needs_token=True) == (
        policy.PUBLIC
    )
    service = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
    for name, needs in (("ModelInfer", True), ("ModelReady", False), ("ServerLive", False)):
        closed = policy.required_roles(f"/{service}/{name}", inference_needs_token=True)
        assert (closed is not policy.PUBLIC) is needs, name
        assert policy.required_roles(f"/{service}/{name}", inference_needs_token=False) is (
            policy.PUBLIC
        )
    assert policy.required_roles("/mrm.v1.LedgerService/Nope", inference_needs_token=False) is None


def test_each_record_kind_has_its_writers() -> None:
    assert policy.appendable(frozenset({Role.PROXY})) == {"PREDICTION", "GAP"}
    assert "EXPLANATION" in policy.appendable(frozenset({Role.EXPLAINER}))
    for role in Role:
        kinds = policy.appendable(frozenset({role}))
        assert ("MODEL_INGESTED" in kinds) is (role is Role.REGISTRY)
        assert ("DEPLOYMENT" in kinds) is (role is Role.REGISTRY)
        assert ("ACCESS" in kinds) is (role is Role.ADMIN)
    assert policy.appendable(frozenset({Role.AUDITOR, Role.DEPLOYER})) == frozenset()


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "http://evil.example/", "javascript:alert(1)", "reports"]
)
def test_sign_in_never_redirects_off_the_server(target: str) -> None:
    assert _safe_next(target) == "/"
    assert _safe_next("/reports/abc?x=1") == "/reports/abc?x=1"


def test_a_session_is_signed_expires_and_dies_with_its_token(
    authenticator: tuple[Authenticator, str, Path],
) -> None:
    auth, token, path = authenticator
    sessions = Sessions(b"k" * 32, 8.0, auth)
    cookie = sessions.issue(auth.authenticate(f"Bearer {token}", None))
    assert token not in cookie
    assert sessions.check(cookie) is not None
    assert sessions.check(cookie.replace(".", ".x", 1)) is None  # tampered signature
    payload, sig = cookie.split(".")
    assert sessions.check(payload[:-2] + "AA." + sig) is None  # tampered content
    assert Sessions(b"o" * 32, 8.0, auth).check(cookie) is None  # another server's key
    brief = Sessions(b"k" * 32, 1e-9, auth)  # expires within the second it is issued
    assert brief.check(brief.issue(auth.authenticate(f"Bearer {token}", None))) is None
    with tokens.editing(path) as entries:
        tokens.revoke(entries, "ops@example.com", revoked_by="admin")
    time.sleep(1.1)  # the store re-reads the file at most every second
    assert sessions.check(cookie) is None
