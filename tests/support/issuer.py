"""A local OIDC issuer for tests: an RSA key, its JWKS (as a file and over HTTP),
and GitHub Actions' id-token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL), so CI
identity is tested end to end with no network. Tokens are signed with PyJWT."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://token.actions.example.test"
AUDIENCE = "mrm"
REPOSITORY = "acme/credit"
REF = "refs/heads/main"
SHA = "3f4e5d6c7b8a99887766554433221100ffeeddcc"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issuer:
    """Mints GitHub-shaped id-tokens. `jwks_file` holds the public key."""

    directory: Path
    issuer: str = ISSUER
    key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    kid: str = "test-key-1"
    url: str = ""  # the HTTP endpoint's base, once `serving()` runs
    request_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    claims_for_job: dict[str, Any] = field(default_factory=dict)
    minted: list[str] = field(default_factory=list)  # every token handed out, to scan for

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.jwks_file = self.directory / "jwks.json"
        self.jwks_file.write_text(json.dumps(self.jwks()))

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": f"repo:{REPOSITORY}:ref:{REF}",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            "repository": REPOSITORY,
            "ref": REF,
            "sha": SHA,
            "actor": "devin-gh",
            "workflow_ref": f"{REPOSITORY}/.github/workflows/deploy.yml@{REF}",
            "run_id": "4242",
        }
        return {k: v for k, v in (base | overrides).items() if v is not None}

    def mint(
        self, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims: Any
    ) -> str:
        """A signed id-token; claims given override (None removes one)."""
        token = jwt.encode(
            self.claims(**claims),
            key or self.key,
            algorithm="RS256",
            headers={"kid": kid or self.kid},
        )
        self.minted.append(token)
        return token

    def config_toml(self, *, jwks: str = "file", models: str = "credit-*") -> str:
        """The server's [[oidc]] block for this issuer: repository and ref to deployer."""
        source = (
            f'jwks_file = "{self.jwks_file}"' if jwks == "file" else f'jwks_url = "{self.url}/jwks"'
        )
        return f"""
[[oidc]]
issuer = "{self.issuer}"
audience = "{AUDIENCE}"
{source}
principal = "ci:{{repository}}@{{ref}}"

[[oidc.rule]]
match = {{ repository = "{REPOSITORY}", ref = "{REF}" }}
roles = ["deployer"]
models = ["{models}"]
"""

    @contextmanager
    def serving(self) -> Iterator[Issuer]:
        """The JWKS at /jwks and GitHub's token endpoint at /token, on a free port."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _json(self, status: int, doc: Mapping[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/jwks":
                    self._json(200, issuer.jwks())
                elif parts.path == "/token":
                    if self.headers.get("Authorization") != f"bearer {issuer.request_token}":
                        self._json(401, {"message": "bad request token"})
                        return
                    audience = parse_qs(parts.query).get("audience", [AUDIENCE])[0]
                    token = issuer.mint(aud=audience, **issuer.claims_for_job)
                    self._json(200, {"count": 1, "value": token})
                else:
                    self._json(404, {})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

    def actions_env(self) -> dict[str, str]:
        """What a GitHub Actions runner with `id-token: write` puts in the job's env."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }
