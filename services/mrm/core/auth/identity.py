"""A verified identity as MRM records it: in ledger bodies (JSON) and in the API
(mrm.v1.Identity). Unverified claims (what the caller says of itself) are kept
apart, under their own key, and never mixed with what the server verified."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mrm.client.timestamps import timestamp_us
from mrm.core.auth.principal import Principal
from mrm.v1 import auth_pb2

_METHODS = {
    "token": auth_pb2.AUTH_METHOD_TOKEN,
    "oidc": auth_pb2.AUTH_METHOD_OIDC,
    "mtls": auth_pb2.AUTH_METHOD_MTLS,
    "none": auth_pb2.AUTH_METHOD_NONE,
    "system": auth_pb2.AUTH_METHOD_SYSTEM,
}


def identity_json(who: Principal, unverified: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `identity` object of a record body: verified facts, then the unverified."""
    doc: dict[str, Any] = {
        "principal": who.name,
        "method": who.method.value,
        "roles": sorted(who.roles),
        "models": list(who.models),
        "verified": dict(who.claims),
        "unverified": dict(unverified or {}),
    }
    if who.token_id:
        doc["token_id"] = who.token_id
    if who.issuer:
        doc["issuer"] = who.issuer
    return doc


def identity_pb(doc: Mapping[str, Any] | None) -> auth_pb2.Identity | None:
    """mrm.v1.Identity from a recorded `identity` object (None when there is none)."""
    if not doc:
        return None
    return auth_pb2.Identity(
        principal=str(doc.get("principal", "")),
        method=_METHODS.get(str(doc.get("method", "")), auth_pb2.AUTH_METHOD_UNSPECIFIED),
        roles=[str(r) for r in doc.get("roles", [])],
        models=[str(m) for m in doc.get("models", [])],
        token_id=str(doc.get("token_id", "")),
        issuer=str(doc.get("issuer", "")),
        verified_claims={str(k): str(v) for k, v in dict(doc.get("verified", {})).items()},
        unverified_claims={str(k): str(v) for k, v in dict(doc.get("unverified", {})).items()},
    )


def principal_pb(who: Principal) -> auth_pb2.Identity:
    out = identity_pb(identity_json(who))
    assert out is not None
    if who.expires_at_us:
        out.expire_time.CopyFrom(timestamp_us(who.expires_at_us))
    return out
