"""An `Identity` message (who made a change, as the server verified it) as JSON."""

from __future__ import annotations

from typing import Any

from mrm.v1 import auth_pb2


def identity_json(identity: auth_pb2.Identity) -> dict[str, Any]:
    """An `Identity` message as JSON (`{}` for changes recorded before authentication)."""
    if not identity.principal:
        return {}
    return {
        "principal": identity.principal,
        "method": auth_pb2.AuthMethod.Name(identity.method).removeprefix("AUTH_METHOD_").lower(),
        "roles": list(identity.roles),
        "models": list(identity.models),
        "token_id": identity.token_id,
        "issuer": identity.issuer,
        "verified_claims": dict(identity.verified_claims),
        "unverified_claims": dict(identity.unverified_claims),
        "expires_at": identity.expire_time.ToJsonString()
        if identity.HasField("expire_time")
        else "",
    }
