"""Credentials of a local installation, made by `mrm up` (or `mrm auth init`) once.

Each of the six gets a token file in MRM_HOME (mode 0600) and an entry in the
tokens file: the admin token that `mrmctl` and `mrm status` on this machine pick
up, and one token per service for calling the others (the dashboard's is an
auditor's, for it reads everything and writes nothing). A token file that is
missing, or whose token is no longer live, is replaced by a new token; nothing
else in the tokens file is touched. The ledger records each issuance (an ACCESS
record by "system:tokens-file") once it runs.
"""

from __future__ import annotations

from pathlib import Path

from mrm.core.auth import tokens
from mrm.core.auth.principal import Role
from mrm.core.keyfile import write_private
from mrm.core.settings import Settings

LOCAL = {
    "admin": ("local-admin", (Role.ADMIN,)),
    "registry": ("mrm-registry", (Role.REGISTRY,)),
    "explain": ("mrm-explain", (Role.EXPLAINER,)),
    "proxy": ("mrm-proxy", (Role.PROXY,)),
    "monitor": ("mrm-monitor", (Role.MONITOR,)),
    "dashboard": ("mrm-dashboard", (Role.AUDITOR,)),  # reads everything, writes nothing
}
ISSUER = "system:mrm-up"


def _live(entries: list[tokens.TokenEntry], path: Path) -> bool:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    sha = tokens.token_sha256(token)
    return any(e.sha256 == sha and not e.revoked_at for e in entries)


def ensure_local_tokens(settings: Settings, names: tuple[str, ...] = tuple(LOCAL)) -> list[str]:
    """Issue what is missing; the names of the token files written."""
    if settings.insecure:
        return []
    written = []
    with tokens.editing(settings.resolved_tokens_file()) as entries:
        for name in names:
            principal, roles = LOCAL[name]
            path = settings.token_file(name)
            if _live(entries, path):
                continue
            token, _ = tokens.issue(entries, principal, [r.value for r in roles], issued_by=ISSUER)
            write_private(path, token, exclusive=False)
            written.append(name)
    return written
