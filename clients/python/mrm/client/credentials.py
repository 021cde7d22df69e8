"""What a client presents to MRM's servers: a bearer token and, optionally, TLS material.

`ClientAuth.from_env()` finds the credential the way `mrmctl` does, first match wins:

1. `MRM_AUTH=none`: send nothing (a server run with `mrm up --insecure`).
2. A token file given explicitly (`mrmctl --token-file`).
3. An OIDC id-token given to us: `MRM_OIDC_TOKEN` or `MRM_OIDC_TOKEN_FILE` (GitLab's
   `id_tokens:`, any CI with an OIDC provider).
4. In GitHub Actions with `permissions: id-token: write`, the job's id-token,
   requested from `ACTIONS_ID_TOKEN_REQUEST_URL` for the audience
   `MRM_OIDC_AUDIENCE` (default "mrm"). `MRM_AUTH=token` skips 3 and 4.
5. `MRM_TOKEN`, then `MRM_TOKEN_FILE`.
6. The credentials file, `$MRM_CONFIG_DIR/credentials` (`mrmctl login` writes it).
7. The local stack's admin token, `$MRM_HOME/admin.token` (default `.mrm/`), which
   `mrm up` writes, so that a laptop needs no setup step.

Tokens are secrets: they are never logged, printed or put in an error message;
errors name where a credential came from, not what it is.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from mrm.client.configdir import config_dir

DEFAULT_AUDIENCE = "mrm"
_GITHUB_TIMEOUT = 10.0


class CredentialsError(Exception):
    """A credential could not be read or obtained; the message says where and what to do."""


@dataclass(frozen=True)
class ClientTls:
    """TLS to the servers: the CA that signed their certificates, and for mTLS our own."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise CredentialsError(
                "a client certificate needs both a certificate and its key "
                "(MRM_TLS_CLIENT_CERT_FILE and MRM_TLS_CLIENT_KEY_FILE, "
                "or --tls-cert and --tls-key)"
            )
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "the TLS CA file") if self.ca_file else None,
            private_key=_read(self.key_file, "the TLS client key") if self.key_file else None,
            certificate_chain=(
                _read(self.cert_file, "the TLS client certificate") if self.cert_file else None
            ),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientTls | None:
        paths = [env.get(f"MRM_TLS_{n}_FILE", "") for n in ("CA", "CLIENT_CERT", "CLIENT_KEY")]
        if not any(paths):
            return None
        ca, cert, key = (Path(p) if p else None for p in paths)
        return cls(ca, cert, key)


@dataclass(frozen=True)
class ClientAuth:
    """A bearer token (an MRM token or an OIDC id-token) and TLS settings."""

    token: str | None = None
    tls: ClientTls | None = None
    source: str = "no credentials"
    """Where the token came from, for messages ("MRM_TOKEN", a file's path, …)."""
    on_behalf_of: str = ""
    """Services only: the principal they verified, sent as `mrm-on-behalf-of`."""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        out: tuple[tuple[str, str], ...] = ()
        if self.token:
            out += (("authorization", f"Bearer {self.token}"),)
        if self.on_behalf_of:
            out += (("mrm-on-behalf-of", self.on_behalf_of),)
        return out

    def __repr__(self) -> str:  # never show the token
        return f"ClientAuth(source={self.source!r}, tls={self.tls!r})"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        token_file: Path | None = None,
        tls: ClientTls | None = None,
    ) -> ClientAuth:
        """The credential `mrmctl` would use (see the module's docstring for the order)."""
        env = os.environ if env is None else env
        tls = tls or ClientTls.from_env(env)
        mode = env.get("MRM_AUTH", "auto").strip().lower() or "auto"
        if mode not in ("auto", "token", "oidc", "none"):
            raise CredentialsError(f"MRM_AUTH={mode!r}: want auto, token, oidc or none")
        if mode == "none":
            return cls(None, tls, "MRM_AUTH=none")
        if token_file is not None:
            return cls(_token_from(token_file, "--token-file"), tls, str(token_file))
        if mode in ("auto", "oidc"):
            found = _oidc(env)
            if found is not None:
                return cls(found[0], tls, found[1])
            if mode == "oidc":
                raise CredentialsError(
                    "MRM_AUTH=oidc but no id-token is available: set MRM_OIDC_TOKEN or "
                    "MRM_OIDC_TOKEN_FILE, or give the GitHub Actions job "
                    "`permissions: id-token: write`"
                )
        if env.get("MRM_TOKEN", "").strip():
            return cls(_checked(env["MRM_TOKEN"].strip(), "MRM_TOKEN"), tls, "MRM_TOKEN")
        if env.get("MRM_TOKEN_FILE"):
            path = Path(env["MRM_TOKEN_FILE"])
            return cls(_token_from(path, "MRM_TOKEN_FILE"), tls, str(path))
        stored = credentials_file(env)
        if stored.exists():
            return cls(_token_from(stored, "the credentials file"), tls, str(stored))
        local = Path(env.get("MRM_HOME") or ".mrm") / "admin.token"
        if local.is_file():
            return cls(_token_from(local, "the local stack's admin token"), tls, str(local))
        return cls(None, tls)


def credentials_file(env: Mapping[str, str]) -> Path:
    """Where `mrmctl login` keeps a token: `$MRM_CONFIG_DIR/credentials`."""
    return config_dir(env) / "credentials"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _checked(token: str, where: str) -> str:
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise CredentialsError(f"{where} does not hold a token (one line, no spaces)")
    return token


def _token_from(path: Path, what: str) -> str:
    text = _read(path, what).decode(errors="replace").strip()
    return _checked(text, f"{what} {path}")


def _oidc(env: Mapping[str, str]) -> tuple[str, str] | None:
    if env.get("MRM_OIDC_TOKEN", "").strip():
        return _checked(env["MRM_OIDC_TOKEN"].strip(), "MRM_OIDC_TOKEN"), "MRM_OIDC_TOKEN"
    if env.get("MRM_OIDC_TOKEN_FILE"):
        path = Path(env["MRM_OIDC_TOKEN_FILE"])
        return _token_from(path, "MRM_OIDC_TOKEN_FILE"), str(path)
    url = env.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if url and request_token:
        audience = env.get("MRM_OIDC_AUDIENCE", "").strip() or DEFAULT_AUDIENCE
        return github_id_token(url, request_token, audience), "the GitHub Actions id-token"
    return None


def github_id_token(url: str, request_token: str, audience: str) -> str:
    """The job's OIDC id-token from GitHub Actions' token service, for `audience`."""
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    full = f"{url}{sep}audience={urllib.parse.quote(audience, safe='')}"
    if urllib.parse.urlsplit(full).scheme not in ("http", "https"):
        raise CredentialsError("ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        full,
        headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"},
    )
    hint = "does the job have `permissions: id-token: write`?"
    try:
        with urllib.request.urlopen(request, timeout=_GITHUB_TIMEOUT) as response:  # noqa: S310
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise CredentialsError(
            f"GitHub Actions refused the id-token request (HTTP {exc.code}); {hint}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CredentialsError(
            f"cannot get the GitHub Actions id-token from ACTIONS_ID_TOKEN_REQUEST_URL "
            f"({reason}); {hint}"
        ) from None
    value = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        raise CredentialsError("GitHub Actions answered the id-token request without a token")
    return _checked(value, "the GitHub Actions id-token")
