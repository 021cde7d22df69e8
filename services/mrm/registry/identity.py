"""What the registry records of who made a change: the verified principal, and the
CI's own account of itself (unverified), kept apart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mrm.core.auth import Method, Principal
from mrm.core.auth.identity import identity_json
from mrm.core.errors import PermissionDenied

_UNVERIFIED = ("ci_actor", "ci_system", "git_user", "git_email")


def unverified_claims(facts: Mapping[str, Any]) -> dict[str, str]:
    """The deploy's `deployed_by` facts (CI variables, the git author): what the caller
    says of itself, which nothing verified."""
    said = facts.get("deployed_by")
    if not isinstance(said, dict):
        return {}
    return {k: str(said[k]) for k in _UNVERIFIED if isinstance(said.get(k), str) and said[k]}


def check_commit(who: Principal, facts: Mapping[str, Any], field: str) -> None:
    """A CI job's verified `sha` must be the commit the deploy says it is from."""
    verified = who.claims.get("sha", "") if who.method is Method.OIDC else ""
    if not verified:
        return
    commit = facts.get("source_commit")
    said = commit.get("sha", "") if isinstance(commit, dict) else ""
    if not isinstance(said, str) or not said:
        return
    same = said.lower() == verified.lower() or (
        len(said) >= 7 and verified.lower().startswith(said.lower())
    )
    if not same:
        raise PermissionDenied(
            f"{field}.source_commit: {said[:12]} is not the commit the CI job's verified "
            f"id-token names ({verified[:12]}); deploy from the commit the job checked out"
        )


def recorded(who: Principal, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The `identity` object of a MODEL_INGESTED or DEPLOYMENT body."""
    return identity_json(who, unverified_claims(facts))


def as_json(identity: Mapping[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))
