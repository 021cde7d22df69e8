"""The server's auth configuration (`MRM_AUTH_CONFIG_FILE`, TOML): whom to trust beyond
the tokens file.

    # A CI provider's OIDC id-tokens. GitHub Actions' defaults are shown.
    [[oidc]]
    issuer = "https://token.actions.githubusercontent.com"
    audience = "mrm"                        # or a list; what `aud` must hold
    # jwks_url = "https://…/jwks"          # default: the issuer's discovery document
    # jwks_file = "/etc/mrm/jwks.json"     # or a file (tests, air-gapped hosts)
    # algorithms = ["RS256"]
    # leeway_seconds = 30                  # clock skew allowed on exp and nbf
    # principal = "ci:{repository}@{ref}"  # the actor, from the token's claims
    # Which claims are recorded, under which names (GitLab: project_path, sha,
    # ref, user_login, ci_config_ref_uri, pipeline_id, jti):
    # claims.repository = "repository"    # (dotted keys, or one inline table)
    # claims.actor = "actor"               # … sha, ref, workflow_ref, run_id, jti

    [[oidc.rule]]                           # the first rule whose every glob matches wins
    match = { repository = "acme/credit", ref = "refs/heads/main" }
    roles = ["deployer"]
    models = ["credit-*"]

    # Client certificates (mTLS): the SAN (a SPIFFE ID, a DNS name) to roles.
    [[mtls]]
    identity = "spiffe://acme.example/ns/mrm/sa/proxy"
    roles = ["proxy"]

Every error names the file and the key to fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrm.core.auth.principal import Role, parse_roles

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_CLAIMS: Mapping[str, str] = {
    "repository": "repository",
    "sha": "sha",
    "ref": "ref",
    "actor": "actor",
    "workflow_ref": "workflow_ref",
    "run_id": "run_id",
    "jti": "jti",
}
_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Rule:
    """Globs over claims (or the SAN) that, when all match, grant roles."""

    match: Mapping[str, str]
    roles: frozenset[Role]
    models: tuple[str, ...] = ("*",)
    principal: str = ""
    """A template over the claims; empty: the issuer's template."""


@dataclass(frozen=True)
class OidcIssuer:
    issuer: str
    audiences: tuple[str, ...]
    jwks_url: str = ""
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 30.0
    principal: str = "oidc:{sub}"
    claims: Mapping[str, str] = field(default_factory=lambda: dict(GITHUB_CLAIMS))
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class MtlsIdentity:
    identity: str
    """A glob over the certificate's identity (URI SAN, else DNS SAN, else CN)."""
    roles: frozenset[Role]
    models: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class AuthConfig:
    oidc: tuple[OidcIssuer, ...] = ()
    mtls: tuple[MtlsIdentity, ...] = ()

    @classmethod
    def load(cls, path: Path | None) -> AuthConfig:
        """The configuration in `path` (none: nothing beyond the tokens file).
        ValueError naming the file and the key when it is wrong."""
        if path is None:
            return cls()
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not TOML: {exc}") from None
        try:
            unknown = set(doc) - {"oidc", "mtls"}
            if unknown:
                raise ValueError(f"{sorted(unknown)[0]}: unknown section (want oidc or mtls)")
            oidc = tuple(
                _issuer(item, f"oidc[{i}]") for i, item in enumerate(_list(doc, "oidc", ""))
            )
            mtls = tuple(_mtls(item, f"mtls[{i}]") for i, item in enumerate(_list(doc, "mtls", "")))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        issuers = [i.issuer for i in oidc]
        if len(set(issuers)) != len(issuers):
            raise ValueError(f"{path}: an oidc issuer is listed twice")
        return cls(oidc, mtls)


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{where}{key}: want [[{key}]] tables")
    return value


def _text(doc: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise ValueError(f"{where}.{key}: {'want a string' if key in doc else 'is required'}")
    return value


def _strings(doc: Mapping[str, Any], key: str, where: str, default: list[str]) -> tuple[str, ...]:
    value = doc.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}.{key}: want a string or a non-empty list of strings")
    return tuple(value)


def _template(value: str, where: str, claims: set[str] | None = None) -> str:
    try:
        value.format_map({name: "x" for name in _FIELD.findall(value)})
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"{where}: {value!r} is not a template like 'ci:{{repository}}'") from None
    return value


def _rules(doc: Mapping[str, Any], where: str) -> tuple[Rule, ...]:
    out = []
    for i, item in enumerate(_list(doc, "rule", where + ".")):
        at = f"{where}.rule[{i}]"
        extra = set(item) - {"match", "roles", "models", "principal"}
        if extra:  # a typo (`model = …`) must not widen a rule to every model
            raise ValueError(f"{at}.{sorted(extra)[0]}: unknown key")
        match = item.get("match", {})
        if not isinstance(match, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in match.items()
        ):
            raise ValueError(f"{at}.match: want a table of claim = glob")
        if not match:
            raise ValueError(f"{at}.match: name at least one claim (a rule must not match all)")
        roles = parse_roles(
            _strings(item, "roles", at, []) if "roles" in item else [], f"{at}.roles"
        )
        principal = _template(_text(item, "principal", at, ""), f"{at}.principal")
        out.append(Rule(dict(match), roles, _strings(item, "models", at, ["*"]), principal))
    return tuple(out)


def _issuer(doc: Mapping[str, Any], where: str) -> OidcIssuer:
    known = {"issuer", "audience", "jwks_url", "jwks_file", "algorithms", "leeway_seconds"}
    known |= {"principal", "claims", "rule"}
    extra = set(doc) - known
    if extra:
        raise ValueError(f"{where}.{sorted(extra)[0]}: unknown key")
    issuer = _text(doc, "issuer", where)
    if not issuer.startswith(("https://", "http://")):
        raise ValueError(f"{where}.issuer: {issuer!r} is not a URL")
    jwks_url = _text(doc, "jwks_url", where, "")
    jwks_file = _text(doc, "jwks_file", where, "")
    if jwks_url and jwks_file:
        raise ValueError(f"{where}: give jwks_url or jwks_file, not both")
    claims = doc.get("claims", GITHUB_CLAIMS)
    if not isinstance(claims, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in claims.items()
    ):
        raise ValueError(f"{where}.claims: want a table of name = claim")
    leeway = doc.get("leeway_seconds", 30)
    if not isinstance(leeway, int | float) or isinstance(leeway, bool) or not 0 <= leeway <= 600:
        raise ValueError(f"{where}.leeway_seconds: want a number of seconds, 0 to 600")
    algorithms = _strings(doc, "algorithms", where, ["RS256"])
    if any(a.lower() == "none" or a.startswith("HS") for a in algorithms):
        raise ValueError(f"{where}.algorithms: only public-key algorithms (RS256, ES256, …)")
    rules = _rules(doc, where)
    if not rules:
        raise ValueError(f"{where}.rule: at least one [[oidc.rule]] maps tokens to roles")
    return OidcIssuer(
        issuer=issuer,
        audiences=_strings(doc, "audience", where, []) if "audience" in doc else _missing(where),
        jwks_url=jwks_url,
        jwks_file=Path(jwks_file) if jwks_file else None,
        algorithms=algorithms,
        leeway_seconds=float(leeway),
        principal=_template(_text(doc, "principal", where, "oidc:{sub}"), f"{where}.principal"),
        claims=dict(claims),
        rules=rules,
    )


def _missing(where: str) -> tuple[str, ...]:
    raise ValueError(f"{where}.audience: is required (what the id-token's `aud` must hold)")


def _mtls(doc: Mapping[str, Any], where: str) -> MtlsIdentity:
    extra = set(doc) - {"identity", "roles", "models"}
    if extra:
        raise ValueError(f"{where}.{sorted(extra)[0]}: unknown key")
    roles = parse_roles(
        _strings(doc, "roles", where, []) if "roles" in doc else [], f"{where}.roles"
    )
    return MtlsIdentity(_text(doc, "identity", where), roles, _strings(doc, "models", where, ["*"]))
