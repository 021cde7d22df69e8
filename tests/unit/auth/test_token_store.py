"""The tokens file as a server sees it: authenticating a token, and re-reading the file."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mrm.core.auth import tokens
from mrm.core.auth.principal import Method, Role
from mrm.core.errors import Unauthenticated

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _issue(path: Path, principal: str = "devin@example.com", **kw: Any) -> str:
    with tokens.editing(path) as entries:
        token, _ = tokens.issue(entries, principal, ("deployer",), issued_by="admin", **kw)
    return token


def _revoke(path: Path, wanted: str) -> None:
    with tokens.editing(path) as entries:
        tokens.revoke(entries, wanted, revoked_by="sec@example.com")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.json"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(path: Path, clock: Clock) -> Callable[[], tokens.TokenStore]:
    return lambda: tokens.TokenStore(path, clock=clock)


def _refusal(store: tokens.TokenStore, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as refused:
        store.authenticate(token)
    assert token not in refused.value.message
    assert token[4:20] not in refused.value.message
    return refused.value


def test_a_live_token_is_its_principal(path: Path, store: Callable[[], tokens.TokenStore]) -> None:
    with tokens.editing(path) as entries:
        token, entry = tokens.issue(
            entries,
            "devin@example.com",
            ("deployer", "auditor"),
            models=("credit-*",),
            issued_by="admin",
            expires_at_us=int((T0 + 3600) * 1e6),
        )
    who = store().authenticate(token)
    assert who.name == "devin@example.com"
    assert who.method is Method.TOKEN
    assert who.roles == {Role.DEPLOYER, Role.AUDITOR}
    assert who.models == ("credit-*",)
    assert who.token_id == entry.id
    assert who.expires_at_us == int((T0 + 3600) * 1e6)


def test_an_unknown_token_is_token_unknown(
    path: Path, store: Callable[[], tokens.TokenStore]
) -> None:
    _issue(path)
    assert _refusal(store(), tokens.new_token()).reason == "TOKEN_UNKNOWN"


def test_a_revoked_token_is_token_revoked_naming_its_id_and_who_revoked_it(
    path: Path, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path)
    _revoke(path, "devin@example.com")
    refused = _refusal(store(), token)
    assert refused.reason == "TOKEN_REVOKED"
    assert tokens.token_id(tokens.token_sha256(token)) in refused.message
    assert "sec@example.com" in refused.message


def test_an_expired_token_is_token_expired_from_its_expiry_on(
    path: Path, clock: Clock, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path, expires_at_us=int((T0 + 60) * 1e6))
    s = store()
    clock.now = T0 + 59
    assert s.authenticate(token).name == "devin@example.com"
    clock.now = T0 + 60
    refused = _refusal(s, token)
    assert refused.reason == "TOKEN_EXPIRED"
    assert "2030-03-17T17:47:40Z" in refused.message


def test_a_revoked_and_expired_token_says_revoked(
    path: Path, clock: Clock, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path, expires_at_us=int((T0 + 60) * 1e6))
    _revoke(path, "devin@example.com")
    clock.now = T0 + 120
    assert _refusal(store(), token).reason == "TOKEN_REVOKED"


def test_a_token_of_the_right_shape_but_one_character_off_is_unknown(
    path: Path, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path)
    last = "A" if token[-1] != "A" else "B"
    assert _refusal(store(), token[:-1] + last).reason == "TOKEN_UNKNOWN"


def test_every_entry_is_compared_whichever_matches(
    path: Path, store: Callable[[], tokens.TokenStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _issue(path, "a@example.com")
    for i in range(4):
        _issue(path, f"other{i}@example.com")
    s = store()
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert s.authenticate(first).name == "a@example.com"
    assert len(calls) == 5  # no early exit on the first (matching) entry


def test_a_token_issued_after_the_start_works_at_once(
    path: Path, store: Callable[[], tokens.TokenStore]
) -> None:
    _issue(path, "first@example.com")
    s = store()
    later = _issue(path, "later@example.com")
    assert s.authenticate(later).name == "later@example.com"  # no clock tick needed


def test_a_revocation_is_seen_within_a_second(
    path: Path, clock: Clock, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path)
    s = store()
    assert s.authenticate(token).name == "devin@example.com"
    _revoke(path, "devin@example.com")
    clock.now += 0.5
    assert s.authenticate(token).name == "devin@example.com"  # not re-read yet
    clock.now += 0.5
    assert _refusal(s, token).reason == "TOKEN_REVOKED"


def test_a_file_broken_while_serving_keeps_the_tokens_read_before(
    path: Path,
    clock: Clock,
    store: Callable[[], tokens.TokenStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = _issue(path)
    s = store()
    path.write_text("{half a file")
    clock.now += 2
    with caplog.at_level(logging.ERROR, logger="mrm.core.auth.tokens"):
        assert s.authenticate(token).name == "devin@example.com"
    assert "cannot re-read the tokens file" in caplog.text
    # once fixed, it is read again
    path.write_text(json.dumps({"format": 1, "tokens": []}))
    clock.now += 2
    assert _refusal(s, token).reason == "TOKEN_UNKNOWN"


def test_a_file_removed_while_serving_keeps_the_tokens_read_before(
    path: Path, clock: Clock, store: Callable[[], tokens.TokenStore]
) -> None:
    token = _issue(path)
    s = store()
    path.unlink()
    clock.now += 2
    assert s.authenticate(token).name == "devin@example.com"


def test_a_missing_file_at_start_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tokens.TokenStore(tmp_path / "nope.json")


def test_a_broken_file_at_start_is_a_value_error(path: Path) -> None:
    path.write_text("{")
    with pytest.raises(ValueError, match=str(path)):
        tokens.TokenStore(path)


def test_a_file_others_may_read_is_warned_about(
    path: Path, store: Callable[[], tokens.TokenStore], caplog: pytest.LogCaptureFixture
) -> None:
    _issue(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mrm.core.auth.tokens"):
        store()
    assert "chmod 600" in caplog.text


def test_live_follows_revocation_and_expiry(
    path: Path, clock: Clock, store: Callable[[], tokens.TokenStore]
) -> None:
    with tokens.editing(path) as entries:
        _, short = tokens.issue(
            entries,
            "a@example.com",
            ("auditor",),
            issued_by="x",
            expires_at_us=int((T0 + 60) * 1e6),
        )
        _, gone = tokens.issue(entries, "b@example.com", ("auditor",), issued_by="x")
    s = store()
    assert s.live(short.id)
    assert s.live(gone.id)
    assert not s.live("tok_000000000000")
    _revoke(path, gone.id)
    clock.now += 61
    assert not s.live(short.id)
    assert not s.live(gone.id)
