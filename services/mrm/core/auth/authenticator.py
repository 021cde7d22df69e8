"""Turns what a call carries (its bearer token, its client certificate) into a Principal.

The one place every server (gRPC and HTTP) asks; services never look at the
request for who is calling.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

from mrm.core.auth.config import AuthConfig, MtlsIdentity
from mrm.core.auth.oidc import OidcVerifier, looks_like_jwt
from mrm.core.auth.principal import ANONYMOUS, Method, Principal, valid_name
from mrm.core.auth.tls import ServerTls, certificate_identity
from mrm.core.auth.tokens import PREFIX, TokenStore
from mrm.core.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)


def _missing() -> Unauthenticated:
    return Unauthenticated(
        "CREDENTIALS_MISSING",
        "no credentials: send 'authorization: Bearer <token>' (mrmctl: set MRM_TOKEN, or "
        "use --token-file; a CI job can send its OIDC id-token)",
    )


@dataclass
class Authenticator:
    """Verifies credentials. With `enabled` False (`mrm up --insecure`) every caller
    is ANONYMOUS, holding every role."""

    tokens: TokenStore | None
    oidc: OidcVerifier
    mtls: tuple[MtlsIdentity, ...] = ()
    enabled: bool = True
    tls: ServerTls | None = None

    @classmethod
    def create(
        cls,
        *,
        enabled: bool,
        tokens_file: Path,
        config: AuthConfig,
        tls: ServerTls | None = None,
    ) -> Authenticator:
        """Reads the tokens file (ValueError, naming it, when it is missing or wrong)."""
        if not enabled:
            return cls(None, OidcVerifier(()), enabled=False, tls=tls)
        try:
            tokens = TokenStore(tokens_file)
        except FileNotFoundError:
            raise ValueError(
                f"no tokens file at {tokens_file}: create it with `mrm auth init` (or run "
                "`mrm up`, which does), or point MRM_AUTH_TOKENS_FILE at one"
            ) from None
        return cls(tokens, OidcVerifier(config.oidc), config.mtls, True, tls)

    @staticmethod
    def is_slow(authorization: str | None) -> bool:
        """An id-token may need the issuer's keys fetched: verify it off the event loop."""
        return looks_like_jwt(authorization.partition(" ")[2].strip()) if authorization else False

    def authenticate(self, authorization: str | None, peer_cert_pem: bytes | None) -> Principal:
        """The principal of a call; Unauthenticated (saying why) or PermissionDenied."""
        if not self.enabled:
            return ANONYMOUS
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            value = value.strip()
            if scheme.lower() != "bearer" or not value:
                raise Unauthenticated(
                    "TOKEN_MALFORMED", "the authorization metadata is not 'Bearer <token>'"
                )
            if value.startswith(PREFIX):
                assert self.tokens is not None
                return self.tokens.authenticate(value)
            if looks_like_jwt(value):
                if not self.oidc.configured:
                    raise Unauthenticated(
                        "ID_TOKEN_INVALID",
                        "the id-token was refused: this server trusts no OIDC issuer "
                        "(add one to MRM_AUTH_CONFIG_FILE)",
                    )
                return self.oidc.authenticate(value)
            raise Unauthenticated(
                "TOKEN_MALFORMED",
                "the bearer token is neither an MRM token (mrm_…) nor an OIDC id-token",
            )
        if peer_cert_pem:
            return self._certificate(peer_cert_pem)
        raise _missing()

    def _certificate(self, pem: bytes) -> Principal:
        identity = certificate_identity(pem)
        if not valid_name(identity):
            raise PermissionDenied(
                f"the client certificate names {identity[:80]!r}, which is not a principal "
                "name (at most 200 of letters, digits and ._@:/+=~-)"
            )
        for rule in self.mtls:
            if fnmatch.fnmatchcase(identity, rule.identity):
                return Principal(
                    identity, rule.roles, Method.MTLS, models=rule.models, claims={"san": identity}
                )
        raise PermissionDenied(
            f"the client certificate of {identity!r} is valid but no [[mtls]] identity in the "
            "server's auth configuration gives it a role"
        )
