"""MRM bearer tokens: the tokens file, and checking a presented token against it.

The file (`MRM_AUTH_TOKENS_FILE`, default `MRM_HOME/tokens.json`, mode 0600)
holds, per token, only its SHA-256 with the principal, roles, model globs,
expiry and who issued or revoked it; the token itself is shown once, by `mrm
auth issue`, and never stored. A revoked token stays in the file, marked, so
that its holder is told it was revoked rather than that it is unknown.

Servers re-read the file when it changes (checked at most once a second), so an
issue or a revocation takes effect within a second, with no restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mrm.core.auth.principal import Method, Principal, parse_roles, valid_name
from mrm.core.errors import Unauthenticated
from mrm.core.keyfile import write_private

log = logging.getLogger(__name__)

PREFIX = "mrm_"
TOKEN = re.compile(r"mrm_[A-Za-z0-9_-]{43}")
"""What `new_token` makes: the prefix and 32 random bytes, base64url."""
_FORMAT = 1
_RELOAD_EVERY = 1.0


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(sha256_hex: str) -> str:
    """A token's public name: derived from its hash, safe to log and record."""
    return "tok_" + sha256_hex[:12]


def rfc3339(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, where: str) -> int:
    """RFC 3339 in UTC ("2026-12-05T10:00:00Z") to microseconds."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


@dataclass(frozen=True)
class TokenEntry:
    """One line of the tokens file."""

    sha256: str
    principal: str
    roles: tuple[str, ...]
    models: tuple[str, ...] = ("*",)
    issued_at: str = ""
    issued_by: str = ""
    expires_at: str = ""
    revoked_at: str = ""
    revoked_by: str = ""
    digest: bytes = field(default=b"", compare=False, repr=False)

    @property
    def id(self) -> str:
        return token_id(self.sha256)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("digest")
        doc["id"] = self.id
        doc["roles"], doc["models"] = list(self.roles), list(self.models)
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> TokenEntry:
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: want an object")
        sha = doc.get("sha256")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"{where}.sha256: want 64 lowercase hex digits")
        name = doc.get("principal")
        if not isinstance(name, str) or not valid_name(name):
            raise ValueError(f"{where}.principal: {name!r} is not a principal name")
        roles = doc.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError(f"{where}.roles: want a list of role names")
        parse_roles(roles, f"{where}.roles")
        models = doc.get("models", ["*"])
        if (
            not isinstance(models, list)
            or not models
            or not all(isinstance(m, str) and m for m in models)
        ):
            raise ValueError(f"{where}.models: want a non-empty list of model-name globs")
        text = {k: doc.get(k, "") for k in ("issued_at", "issued_by", "expires_at")}
        text |= {k: doc.get(k, "") for k in ("revoked_at", "revoked_by")}
        for key, value in text.items():
            if not isinstance(value, str):
                raise ValueError(f"{where}.{key}: want a string")
        for key in ("issued_at", "expires_at", "revoked_at"):
            if text[key]:
                parse_time(text[key], f"{where}.{key}")
        return cls(sha, name, tuple(roles), tuple(models), **text, digest=bytes.fromhex(sha))

    def principal_of(self) -> Principal:
        return Principal(
            self.principal,
            parse_roles(self.roles, "roles"),
            Method.TOKEN,
            models=self.models,
            token_id=self.id,
            expires_at_us=parse_time(self.expires_at, "expires_at") if self.expires_at else 0,
        )


def read_file(path: Path) -> list[TokenEntry]:
    """The entries of a tokens file; ValueError (naming what is wrong) if it is not one."""
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(f'{path} is not an MRM tokens file (want {{"format": {_FORMAT}, …}})')
    items = doc.get("tokens", [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: tokens: want a list")
    try:
        entries = [TokenEntry.from_json(item, f"tokens[{i}]") for i, item in enumerate(items)]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    seen: set[str] = set()
    for entry in entries:
        if entry.sha256 in seen:
            raise ValueError(f"{path}: token {entry.id} is listed twice")
        seen.add(entry.sha256)
    return entries


def write_file(path: Path, entries: Sequence[TokenEntry]) -> None:
    """Replace the file atomically, mode 0600."""
    doc = {"format": _FORMAT, "tokens": [e.to_json() for e in entries]}
    write_private(path, json.dumps(doc, indent=2), exclusive=False)


@contextlib.contextmanager
def editing(path: Path) -> Iterator[list[TokenEntry]]:
    """The entries, to change in place and write back, under an exclusive lock (two
    `mrm auth` commands at once never lose each other's change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        entries = read_file(path) if path.exists() else []
        before = list(entries)
        yield entries
        if entries != before or not path.exists():
            write_file(path, entries)


def issue(
    entries: list[TokenEntry],
    principal: str,
    roles: Sequence[str],
    *,
    models: Sequence[str] = ("*",),
    issued_by: str,
    expires_at_us: int = 0,
    now_us: int | None = None,
) -> tuple[str, TokenEntry]:
    """A new token and its entry, appended to `entries`. ValueError for bad input."""
    if not valid_name(principal):
        raise ValueError(
            f"--principal {principal!r}: want letters, digits and ._@:/+=~- "
            "(at most 200 characters, starting with a letter or digit)"
        )
    parse_roles(roles, "--role")
    if not all(isinstance(m, str) and m.strip() == m and m for m in models):
        raise ValueError("--model: want a model name or glob, e.g. 'credit-*' (not empty)")
    token = new_token()
    now = time.time_ns() // 1000 if now_us is None else now_us
    sha = token_sha256(token)
    entry = TokenEntry(
        sha,
        principal,
        tuple(sorted(set(roles))),
        tuple(models) or ("*",),
        issued_at=rfc3339(now),
        issued_by=issued_by,
        expires_at=rfc3339(expires_at_us) if expires_at_us else "",
        digest=bytes.fromhex(sha),
    )
    entries.append(entry)
    return token, entry


def revoke(
    entries: list[TokenEntry], wanted: str, *, revoked_by: str, now_us: int | None = None
) -> list[TokenEntry]:
    """Mark revoked every live token with id `wanted`, or every live token of the
    principal `wanted`; the entries revoked. ValueError when nothing matches."""
    now = rfc3339(time.time_ns() // 1000 if now_us is None else now_us)
    done = []
    for i, entry in enumerate(entries):
        if entry.revoked_at or wanted not in (entry.id, entry.principal):
            continue
        entries[i] = replace(entry, revoked_at=now, revoked_by=revoked_by)
        done.append(entries[i])
    if not done:
        raise ValueError(f"no live token has the id or principal {wanted!r}")
    return done


class TokenStore:
    """The tokens file as the servers see it, re-read when it changes."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: tuple[TokenEntry, ...] = ()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load(force=True)

    def _load(self, *, force: bool = False) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if force:
                raise
            log.error("the tokens file %s is gone; keeping the tokens read before", self.path)
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        if st.st_mode & 0o077:
            log.warning("tokens file %s is readable by others; chmod 600 it", self.path)
        try:
            entries = tuple(read_file(self.path))
        except (OSError, ValueError) as exc:
            if force:
                raise ValueError(str(exc)) from None
            log.error("cannot re-read the tokens file (%s); keeping the tokens read before", exc)
            self._stamp = stamp
            return
        self._entries, self._stamp = entries, stamp

    def entries(self) -> tuple[TokenEntry, ...]:
        now = self._clock()
        if now - self._checked >= _RELOAD_EVERY:
            with self._lock:
                if now - self._checked >= _RELOAD_EVERY:
                    self._checked = now
                    self._load()
        return self._entries

    def _find(self, digest: bytes, entries: tuple[TokenEntry, ...]) -> TokenEntry | None:
        found = None
        for entry in entries:  # every entry compared, in constant time each
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found

    def authenticate(self, token: str) -> Principal:
        """The principal of a live token; Unauthenticated saying why not.

        A token not yet known makes the store look at the file again at once (a
        stat; a re-read only if it changed), so a token works the moment `mrm auth
        issue` prints it. A revocation is seen within a second."""
        digest = hashlib.sha256(token.encode()).digest()
        found = self._find(digest, self.entries())
        if found is None:
            with self._lock:
                self._load()
            found = self._find(digest, self._entries)
        if found is None:
            raise Unauthenticated(
                "TOKEN_UNKNOWN",
                "the token is not one this server issued (a wrong or mistyped token?)",
            )
        if found.revoked_at:
            raise Unauthenticated(
                "TOKEN_REVOKED",
                f"token {found.id} was revoked at {found.revoked_at} by {found.revoked_by}; "
                "ask an admin for a new one (mrm auth issue)",
            )
        principal = found.principal_of()
        if principal.expires_at_us and principal.expires_at_us <= self._clock() * 1e6:
            raise Unauthenticated(
                "TOKEN_EXPIRED",
                f"token {found.id} expired at {found.expires_at}; ask an admin for a new one",
            )
        return principal

    def live(self, token_id_: str) -> bool:
        """Whether the token with this id is still valid (a browser session re-checks it)."""
        now_us = self._clock() * 1e6
        for entry in self.entries():
            if entry.id == token_id_ and not entry.revoked_at:
                return not entry.expires_at or parse_time(entry.expires_at, "") > now_us
        return False
