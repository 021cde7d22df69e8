"""The tokens file and the store the servers authenticate against."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from mrm.core.auth import tokens
from mrm.core.errors import Unauthenticated


def _store(path: Path, now: list[float]) -> tokens.TokenStore:
    return tokens.TokenStore(path, clock=lambda: now[0])


def _issued(path: Path, principal: str = "devin@example.com", **kw: object) -> str:
    with tokens.editing(path) as entries:
        token, _ = tokens.issue(entries, principal, ("deployer",), issued_by="admin", **kw)  # type: ignore[arg-type]
    return token


def test_tokens_are_unique_prefixed_and_stored_only_as_their_hash(tmp_path: Path) -> None:
    made = {tokens.new_token() for _ in range(200)}
    assert len(made) == 200
    assert all(t.startswith(tokens.PREFIX) and len(t) > 40 for t in made)
    path = tmp_path / "tokens.json"
    token = _issued(path)
    text = path.read_text()
    assert token not in text
    assert tokens.token_sha256(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.read_file(path)[0].principal == "devin@example.com"


def test_each_refusal_says_why_and_never_echoes_the_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    now = [1_900_000_000.0]
    live = _issued(path, "a@example.com")
    gone = _issued(path, "b@example.com")
    late = _issued(path, "c@example.com", expires_at_us=int((now[0] + 60) * 1e6))
    with tokens.editing(path) as entries:
        tokens.revoke(entries, "b@example.com", revoked_by="admin")
    store = _store(path, now)
    assert store.authenticate(live).name == "a@example.com"
    assert store.authenticate(late).name == "c@example.com"
    now[0] += 120
    for token, reason in (
        (gone, "TOKEN_REVOKED"),
        (late, "TOKEN_EXPIRED"),
        (tokens.new_token(), "TOKEN_UNKNOWN"),
    ):
        with pytest.raises(Unauthenticated) as refused:
            store.authenticate(token)
        assert refused.value.reason == reason
        assert token not in refused.value.message


def test_the_store_sees_an_issue_and_a_revocation_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    now = [1_900_000_000.0]
    _issued(path, "first@example.com")
    store = _store(path, now)
    later = _issued(path, "later@example.com")
    # at once, with no time passing: an unknown token makes the store look again
    assert store.authenticate(later).name == "later@example.com"
    with tokens.editing(path) as entries:
        tokens.revoke(entries, "later@example.com", revoked_by="admin")
    now[0] += 0.5  # a known token is re-checked against the file once a second
    assert store.authenticate(later).name == "later@example.com"
    now[0] += 1
    with pytest.raises(Unauthenticated):
        store.authenticate(later)


def test_revoke_by_id_or_principal_and_nothing_to_revoke(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _issued(path, "x@example.com")
    _issued(path, "x@example.com")
    with tokens.editing(path) as entries:
        first = entries[0].id
        assert [e.id for e in tokens.revoke(entries, first, revoked_by="a")] == [first]
        assert len(tokens.revoke(entries, "x@example.com", revoked_by="a")) == 1
        with pytest.raises(ValueError, match="no live token"):
            tokens.revoke(entries, "x@example.com", revoked_by="a")


@pytest.mark.parametrize(
    ("principal", "roles", "said"),
    [
        ("-bad", ("deployer",), "--principal"),
        ("a b", ("deployer",), "--principal"),
        ("ok@example.com", ("root",), "root"),
    ],
)
def test_issue_refuses_bad_input(principal: str, roles: tuple[str, ...], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        tokens.issue([], principal, roles, issued_by="admin")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("not json", "is not JSON"),
        ('{"tokens": []}', "not an MRM tokens file"),
        ('{"format": 1, "tokens": {}}', "tokens: want a list"),
        ('{"format": 1, "tokens": [{"sha256": "xyz"}]}', "tokens[0].sha256"),
    ],
)
def test_a_malformed_tokens_file_names_the_file_and_the_field(
    tmp_path: Path, content: str, said: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(said)) as e:
        tokens.read_file(path)
    assert said in str(e.value)
    assert str(path) in str(e.value) or said.startswith("tokens[")


def test_a_token_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _issued(path)
    doc = json.loads(path.read_text())
    doc["tokens"].append(doc["tokens"][0])
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="listed twice"):
        tokens.read_file(path)
    assert os.path.exists(path)
