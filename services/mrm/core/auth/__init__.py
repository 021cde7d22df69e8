"""Identity and access: who is calling, proven by the transport or a verified token.

One layer for every server: `ServerAuth.from_settings` builds the authenticator
(the tokens file, the trusted OIDC issuers, the client-certificate identities)
and the TLS settings; `GrpcServer` installs its interceptor and the HTTP pages
its middleware. Servicers ask `caller()` (and the ledger `acting()`), never the
request. See mrm.core.auth.policy for who may call what.
"""

from __future__ import annotations

from dataclasses import dataclass

from mrm.client.credentials import ClientAuth, ClientTls
from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.config import AuthConfig
from mrm.core.auth.interceptor import AuthInterceptor, acting, caller, deployer_of
from mrm.core.auth.principal import ANONYMOUS, Method, Principal, Role
from mrm.core.auth.tls import ServerTls
from mrm.core.settings import Settings

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "Method",
    "Principal",
    "Role",
    "ServerAuth",
    "acting",
    "caller",
    "deployer_of",
    "service_auth",
]


@dataclass
class ServerAuth:
    """What a process's servers need to authenticate their callers."""

    authenticator: Authenticator
    inference_needs_token: bool = False

    @property
    def tls(self) -> ServerTls | None:
        return self.authenticator.tls

    def interceptor(self) -> AuthInterceptor:
        return AuthInterceptor(self.authenticator, inference_needs_token=self.inference_needs_token)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerAuth:
        """ValueError, naming the file or variable, when something is missing or wrong."""
        tls = server_tls(settings)
        config = (
            AuthConfig() if settings.insecure else AuthConfig.load(settings.resolved_auth_config())
        )
        authenticator = Authenticator.create(
            enabled=not settings.insecure,
            tokens_file=settings.resolved_tokens_file(),
            config=config,
            tls=tls,
        )
        return cls(authenticator, settings.proxy_require_token)


def server_tls(settings: Settings) -> ServerTls | None:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("MRM_TLS_CLIENT_CA_FILE needs MRM_TLS_CERT_FILE and MRM_TLS_KEY_FILE")
        return None
    if cert is None or key is None:
        raise ValueError("TLS needs both MRM_TLS_CERT_FILE and MRM_TLS_KEY_FILE")
    return ServerTls(cert, key, settings.tls_client_ca_file)


def client_tls(settings: Settings) -> ClientTls | None:
    paths = (settings.tls_ca_file, settings.tls_client_cert_file, settings.tls_client_key_file)
    return ClientTls(*paths) if any(paths) else None


def service_auth(settings: Settings, name: str) -> ClientAuth:
    """The credential service `name` (registry, explain, proxy, admin) presents to the
    others: its token file, and the TLS settings. ValueError when the file is missing."""
    tls = client_tls(settings)
    if settings.insecure:
        return ClientAuth(None, tls, "authentication off")
    path = settings.token_file(name)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        variable = f"MRM_{name.upper()}_TOKEN_FILE"
        raise ValueError(
            f"the {name} has no token at {path}: run `mrm up` once, or `mrm auth init`, "
            f"or set {variable}"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read the {name}'s token {path}: {exc.strerror}") from None
    return ClientAuth(token, tls, str(path))
