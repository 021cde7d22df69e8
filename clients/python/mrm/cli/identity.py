"""How `mrmctl` shows an identity: verified facts and the caller's unverified account
of itself, never mixed."""

from __future__ import annotations

from typing import Any

from mrm.client.identity import identity_json

__all__ = ["by_cell", "identity_json", "identity_lines"]


def identity_lines(doc: dict[str, Any]) -> list[str]:
    """A few lines for a terminal: the principal and how it was verified, the verified
    claims, then what is unverified, labelled so."""
    if not doc:
        return []
    how = doc["method"] + (f" {doc['token_id']}" if doc.get("token_id") else "")
    if doc.get("issuer"):
        how += f" from {doc['issuer']}"
    lines = [f"{doc['principal']} (verified: {how})"]
    lines += [f"  verified {k}: {v}" for k, v in sorted(doc["verified_claims"].items())]
    lines += [
        f"  unverified {k}: {v} (the caller's own claim)"
        for k, v in sorted(doc["unverified_claims"].items())
    ]
    return lines


def by_cell(doc: dict[str, Any], fallback: str) -> str:
    """A table cell: the principal, and `(unverified: …)` when the CI only said so."""
    if not doc:
        return fallback
    said = doc["unverified_claims"].get("ci_actor") or doc["unverified_claims"].get("git_user")
    return str(doc["principal"]) + (f" (unverified: {said})" if said else "")
