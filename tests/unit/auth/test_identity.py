"""How a verified identity is recorded (ledger JSON) and returned (mrm.v1.Identity)."""

from __future__ import annotations

from mrm.core.auth.identity import identity_json, identity_pb, principal_pb
from mrm.core.auth.principal import ANONYMOUS, Method, Principal, Role
from mrm.v1 import auth_pb2

CI = Principal(
    "ci:acme/credit@refs/heads/main",
    frozenset({Role.DEPLOYER, Role.AUDITOR}),
    Method.OIDC,
    models=("credit-*",),
    issuer="https://token.actions.example.test",
    claims={"repository": "acme/credit", "sha": "abc", "sub": "repo:acme/credit"},
    expires_at_us=1_900_000_000_250_000,
)


def test_identity_json_keeps_verified_and_unverified_claims_apart() -> None:
    doc = identity_json(CI, {"repository": "mallory/fork", "host": "laptop"})
    assert doc == {
        "principal": "ci:acme/credit@refs/heads/main",
        "method": "oidc",
        "roles": ["auditor", "deployer"],
        "models": ["credit-*"],
        "verified": {"repository": "acme/credit", "sha": "abc", "sub": "repo:acme/credit"},
        "unverified": {"repository": "mallory/fork", "host": "laptop"},
        "issuer": "https://token.actions.example.test",
    }


def test_identity_json_of_a_token_names_the_token_id_and_no_issuer() -> None:
    who = Principal("ops", frozenset({Role.ADMIN}), Method.TOKEN, token_id="tok_0123456789ab")
    doc = identity_json(who)
    assert doc["token_id"] == "tok_0123456789ab"
    assert "issuer" not in doc
    assert doc["unverified"] == {}


def test_identity_pb_round_trips_identity_json() -> None:
    msg = identity_pb(identity_json(CI, {"host": "laptop"}))
    assert msg is not None
    assert msg.principal == CI.name
    assert msg.method == auth_pb2.AUTH_METHOD_OIDC
    assert list(msg.roles) == ["auditor", "deployer"]
    assert list(msg.models) == ["credit-*"]
    assert msg.issuer == CI.issuer
    assert dict(msg.verified_claims) == dict(CI.claims)
    assert dict(msg.unverified_claims) == {"host": "laptop"}


def test_identity_pb_of_nothing_is_none_and_of_an_unknown_method_is_unspecified() -> None:
    assert identity_pb(None) is None
    assert identity_pb({}) is None
    msg = identity_pb({"principal": "x", "method": "carrier-pigeon"})
    assert msg is not None
    assert msg.method == auth_pb2.AUTH_METHOD_UNSPECIFIED


def test_every_method_has_its_enum_value() -> None:
    for method in Method:
        who = Principal("x", frozenset(), method)
        assert principal_pb(who).method != auth_pb2.AUTH_METHOD_UNSPECIFIED, method


def test_principal_pb_carries_the_expiry_only_when_there_is_one() -> None:
    msg = principal_pb(CI)
    assert (msg.expire_time.seconds, msg.expire_time.nanos) == (1_900_000_000, 250_000_000)
    assert not principal_pb(ANONYMOUS).HasField("expire_time")
