"""Who a call comes from, once a server has verified it: a principal with roles."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a principal may do. Services ask for roles, never for names."""

    ADMIN = "admin"
    """Issues and revokes credentials; every registry change and read."""
    DEPLOYER = "deployer"
    """Registers, promotes and rolls back the models its `models` globs cover."""
    AUDITOR = "auditor"
    """Reads and verifies everything; writes nothing itself."""
    PROXY = "proxy"
    """The inference proxy: appends PREDICTION and GAP records, reads what it serves."""
    EXPLAINER = "explainer"
    """The Explain service: appends EXPLANATION and EXPLAINABILITY_BASELINE records."""
    REGISTRY = "registry"
    """The registry service: appends the records of the changes it makes."""
    MONITOR = "monitor"
    """The monitor: appends DRIFT and ALERT records, and OUTCOME records and
    acknowledgements on behalf of the deployers it verified."""


ROLES = tuple(r.value for r in Role)


class Method(StrEnum):
    """How a principal was verified (mrm.v1.AuthMethod without the prefix)."""

    TOKEN = "token"  # noqa: S105 (the method's name, not a secret)
    OIDC = "oidc"
    MTLS = "mtls"
    NONE = "none"
    SYSTEM = "system"


# A principal's name becomes the `actor` of ledger records (at most 256
# characters there): printable, no spaces, so it reads unambiguously in a log line.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+=~-]{0,199}")


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def parse_roles(values: Iterable[str], where: str) -> frozenset[Role]:
    """Role names as given in a file or on the command line; ValueError naming `where`."""
    roles = set()
    for value in values:
        try:
            roles.add(Role(value))
        except ValueError:
            raise ValueError(
                f"{where}: {value!r} is not a role (want one of {', '.join(ROLES)})"
            ) from None
    if not roles:
        raise ValueError(f"{where}: at least one role is required")
    return frozenset(roles)


@dataclass(frozen=True)
class Principal:
    """A verified caller. `name` is what the ledger records as `actor`."""

    name: str
    roles: frozenset[Role]
    method: Method
    models: tuple[str, ...] = ("*",)
    """Model-name globs a deployer may change."""
    token_id: str = ""
    issuer: str = ""
    claims: Mapping[str, str] = field(default_factory=dict)
    """What the credential proved beyond the name (an id-token's claims, a certificate's SAN)."""
    expires_at_us: int = 0

    def has(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)

    def may_deploy(self, model_name: str) -> bool:
        """A deployer for this model (by its globs), or an admin."""
        if Role.ADMIN in self.roles:
            return True
        return Role.DEPLOYER in self.roles and any(
            fnmatch.fnmatchcase(model_name, pattern) for pattern in self.models
        )

    def describe(self) -> str:
        """One line for an error message: the name, how it was verified, the roles."""
        roles = ", ".join(sorted(self.roles)) or "no roles"
        return f"{self.name} ({self.method.value}; {roles})"


ANONYMOUS = Principal("anonymous", frozenset(Role), Method.NONE)
"""Every caller when authentication is off (`mrm up --insecure`): nothing is verified."""


def system(name: str) -> Principal:
    """MRM itself, for records a server writes on its own (bootstrap credentials)."""
    return Principal(f"system:{name}", frozenset({Role.ADMIN}), Method.SYSTEM)
