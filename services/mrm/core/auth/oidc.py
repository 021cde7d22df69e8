"""OIDC id-tokens (a CI job's identity) verified with PyJWT against the issuer's JWKS.

Checked: the signature against the issuer's published keys, `iss`, `aud`, `exp`
and `nbf` (with the configured leeway), and that `sub` and `iat` are present.
The token then maps to a principal by the first of the issuer's rules whose
globs all match its claims; no rule is PERMISSION_DENIED, naming the claims
the rules looked at.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any

import jwt

from mrm.core.auth.config import OidcIssuer, Rule
from mrm.core.auth.principal import Method, Principal, valid_name
from mrm.core.errors import PermissionDenied, Unauthenticated, Unavailable

log = logging.getLogger(__name__)
_FETCH_TIMEOUT = 5.0
_KEYS_LIFESPAN = 300.0


def looks_like_jwt(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and all(parts[:2]) and value[:2] == "ey"


def _invalid(why: str) -> Unauthenticated:
    return Unauthenticated("ID_TOKEN_INVALID", f"the id-token was refused: {why}")


class _Keys:
    """One issuer's signing keys: from its JWKS URL (cached, refreshed on an unknown
    key id) or from a file (re-read when it changes)."""

    def __init__(self, issuer: OidcIssuer) -> None:
        self.issuer = issuer
        self._client: jwt.PyJWKClient | None = None
        self._file_keys: tuple[float, jwt.PyJWKSet] | None = None
        self._lock = threading.Lock()

    def _url(self) -> str:
        if self.issuer.jwks_url:
            return self.issuer.jwks_url
        discovery = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(discovery, timeout=_FETCH_TIMEOUT) as resp:  # noqa: S310
                doc = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise Unavailable(
                f"cannot read the OIDC discovery document of {self.issuer.issuer} ({exc}); "
                "set jwks_url or jwks_file in the auth configuration"
            ) from None
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise Unavailable(f"the discovery document of {self.issuer.issuer} has no jwks_uri")
        return uri

    def key_for(self, token: str) -> Any:
        if self.issuer.jwks_file is not None:
            return self._from_file(token)
        with self._lock:
            if self._client is None:
                self._client = jwt.PyJWKClient(
                    self._url(), lifespan=_KEYS_LIFESPAN, timeout=_FETCH_TIMEOUT
                )
            client = self._client
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable(f"cannot fetch the keys of {self.issuer.issuer}: {exc}") from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise _invalid(f"it is not signed by a key of {self.issuer.issuer} ({exc})") from None

    def _from_file(self, token: str) -> Any:
        path = self.issuer.jwks_file
        assert path is not None
        try:
            mtime = path.stat().st_mtime
            cached = self._file_keys
            if cached is None or cached[0] != mtime:
                keys = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
                self._file_keys = cached = (mtime, keys)
        except (OSError, jwt.PyJWKSetError, ValueError) as exc:
            raise Unavailable(f"cannot read the JWKS file {path}: {exc}") from None
        kid = jwt.get_unverified_header(token).get("kid")
        for key in cached[1].keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise _invalid(f"it is signed by key {kid!r}, which {path} does not hold")


class OidcVerifier:
    """Verifies id-tokens of the configured issuers and maps them to principals."""

    def __init__(self, issuers: tuple[OidcIssuer, ...]) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._keys = {i.issuer: _Keys(i) for i in issuers}

    @property
    def configured(self) -> bool:
        return bool(self._issuers)

    def authenticate(self, token: str) -> Principal:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise Unauthenticated(
                "TOKEN_MALFORMED", f"the bearer token is not a readable JWT ({exc})"
            ) from None
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            trusted = ", ".join(self._issuers) or "none configured"
            raise _invalid(f"issuer {iss!r} is not one this server trusts ({trusted})")
        if header.get("alg") not in issuer.algorithms:
            raise _invalid(
                f"it is signed with {header.get('alg')!r}; {issuer.issuer} tokens must use "
                + " or ".join(issuer.algorithms)
            )
        key = self._keys[issuer.issuer].key_for(token)
        claims = _verified(token, key, issuer)
        return _principal(issuer, claims)


def _verified(token: str, key: Any, issuer: OidcIssuer) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(issuer.algorithms),
            audience=list(issuer.audiences),
            issuer=issuer.issuer,
            leeway=issuer.leeway_seconds,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid("it has expired (exp is past)") from None
    except jwt.ImmatureSignatureError:
        raise _invalid("it is not valid yet (nbf or iat is in the future)") from None
    except jwt.InvalidAudienceError:
        want = " or ".join(issuer.audiences)
        raise _invalid(f"its audience (aud) is not {want}; request it for that audience") from None
    except jwt.InvalidIssuerError:
        raise _invalid("its issuer does not match") from None
    except jwt.InvalidSignatureError:
        raise _invalid(f"its signature does not verify with {issuer.issuer}'s keys") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"it has no {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise _invalid(str(exc)) from None
    except (TypeError, ValueError, jwt.InvalidKeyError):
        # e.g. an RS256 token naming an EC key of the issuer's JWKS
        raise _invalid(f"its key id names a key of {issuer.issuer} of another type") from None
    return claims


def _text_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: str(v)
        for k, v in claims.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool)
    }


def _first_rule(issuer: OidcIssuer, text: Mapping[str, str]) -> Rule | None:
    for rule in issuer.rules:
        if all(
            claim in text and fnmatch.fnmatchcase(text[claim], pattern)
            for claim, pattern in rule.match.items()
        ):
            return rule
    return None


def _principal(issuer: OidcIssuer, claims: Mapping[str, Any]) -> Principal:
    text = _text_claims(claims)
    rule = _first_rule(issuer, text)
    if rule is None:
        looked_at = sorted({c for r in issuer.rules for c in r.match})
        shown = ", ".join(f"{c}={text.get(c, '(none)')}" for c in looked_at)
        raise PermissionDenied(
            f"the id-token of {text.get('sub', '?')} ({shown}) matches no rule for "
            f"{issuer.issuer} in the server's auth configuration"
        )
    template = rule.principal or issuer.principal
    try:
        name = template.format_map(text)
    except (KeyError, ValueError) as exc:
        raise PermissionDenied(
            f"the principal template {template!r} needs the claim {exc}, "
            "which the id-token does not have"
        ) from None
    if not valid_name(name):
        raise PermissionDenied(f"the id-token maps to {name!r}, which is not a principal name")
    recorded = {name_: text[claim] for name_, claim in issuer.claims.items() if claim in text}
    recorded["sub"] = text["sub"]
    exp = claims.get("exp")
    return Principal(
        name,
        rule.roles,
        Method.OIDC,
        models=rule.models,
        issuer=issuer.issuer,
        claims=recorded,
        expires_at_us=int(exp * 1_000_000) if isinstance(exp, int | float) else 0,
    )
