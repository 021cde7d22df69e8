"""The tokens file: its format, issuing and revoking, and what a wrong file says."""

from __future__ import annotations

import contextlib
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from mrm.core.auth import tokens

NOW_US = 1_900_000_000_000_000


def _issue(path: Path, principal: str = "devin@example.com", **kw: Any) -> tuple[str, str]:
    """A token issued into the file at `path`, and its id."""
    with tokens.editing(path) as entries:
        token, entry = tokens.issue(entries, principal, ("deployer",), issued_by="admin", **kw)
    return token, entry.id


def _with_entry(path: Path, **changes: Any) -> None:
    """Rewrite the file's first entry with `changes` (None deletes a key)."""
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            doc["tokens"][0].pop(key, None)
        else:
            doc["tokens"][0][key] = value
    path.write_text(json.dumps(doc))


def test_new_token_has_the_prefix_and_32_random_bytes() -> None:
    token = tokens.new_token()
    assert tokens.TOKEN.fullmatch(token)
    assert token.startswith(tokens.PREFIX)


def test_new_tokens_are_unique() -> None:
    assert len({tokens.new_token() for _ in range(1000)}) == 1000


def test_a_tokens_id_is_derived_from_its_hash_and_reveals_nothing_else() -> None:
    token = tokens.new_token()
    sha = tokens.token_sha256(token)
    assert len(sha) == 64
    assert tokens.token_id(sha) == "tok_" + sha[:12]
    assert token[4:16] not in tokens.token_id(sha)


def test_the_file_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    with tokens.editing(path) as entries:
        tokens.issue(
            entries,
            "devin@example.com",
            ("deployer", "auditor", "deployer"),
            models=("credit-*", "fraud"),
            issued_by="admin@example.com",
            expires_at_us=NOW_US + 86_400_000_000,
            now_us=NOW_US,
        )
        tokens.issue(entries, "ops@example.com", ("admin",), issued_by="admin", now_us=NOW_US)
        tokens.revoke(entries, "ops@example.com", revoked_by="sec@example.com", now_us=NOW_US)
        written = list(entries)
    read = tokens.read_file(path)
    assert read == written
    first = read[0]
    assert first.roles == ("auditor", "deployer")  # sorted, once each
    assert first.models == ("credit-*", "fraud")
    assert first.issued_at == "2030-03-17T17:46:40Z"
    assert first.expires_at == "2030-03-18T17:46:40Z"
    assert first.digest == bytes.fromhex(first.sha256)
    assert (read[1].revoked_at, read[1].revoked_by) == ("2030-03-17T17:46:40Z", "sec@example.com")
    doc = json.loads(path.read_text())
    assert doc["format"] == 1
    assert doc["tokens"][0]["id"] == first.id


def test_the_file_holds_the_hash_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token, _ = _issue(path)
    assert token not in path.read_text()
    assert tokens.token_sha256(token) in path.read_text()


def test_the_file_is_mode_0600_after_issue_and_after_revoke(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _issue(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with tokens.editing(path) as entries:
        tokens.revoke(entries, "devin@example.com", revoked_by="admin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_editing_without_a_change_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _issue(path)
    before = path.stat()
    with tokens.editing(path):
        pass
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_editing_a_missing_file_creates_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "home" / "tokens.json"
    with tokens.editing(path):
        pass
    assert tokens.read_file(path) == []


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "is not JSON"),
        ("[]", "is not an MRM tokens file"),
        ('{"format": 2, "tokens": []}', "is not an MRM tokens file"),
        ('{"format": 1, "tokens": {}}', "tokens: want a list"),
    ],
    ids=["not json", "not an object", "another format", "tokens not a list"],
)
def test_a_file_that_is_not_a_tokens_file_is_refused_naming_it(
    tmp_path: Path, content: str, said: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="^" + str(path)) as refused:
        tokens.read_file(path)
    assert said in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"sha256": "ABC"}, "tokens[0].sha256: want 64 lowercase hex digits"),
        ({"sha256": None}, "tokens[0].sha256"),
        ({"principal": "has space"}, "tokens[0].principal: 'has space' is not a principal"),
        ({"roles": "admin"}, "tokens[0].roles: want a list of role names"),
        ({"roles": ["root"]}, "tokens[0].roles: 'root' is not a role"),
        ({"roles": []}, "tokens[0].roles: at least one role is required"),
        ({"models": []}, "tokens[0].models: want a non-empty list"),
        ({"models": [""]}, "tokens[0].models: want a non-empty list"),
        ({"issued_by": 7}, "tokens[0].issued_by: want a string"),
        ({"expires_at": "tomorrow"}, "tokens[0].expires_at: 'tomorrow' is not an RFC 3339 time"),
        ({"revoked_at": "2026-13-01T00:00:00Z"}, "tokens[0].revoked_at"),
    ],
)
def test_a_wrong_entry_names_the_entry_and_the_field(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    path = tmp_path / "tokens.json"
    _issue(path)
    _with_entry(path, **changes)
    with pytest.raises(ValueError, match=re.escape(said)):
        tokens.read_file(path)


def test_a_wrong_entry_names_the_file_too(tmp_path: Path) -> None:
    # `mrm auth list` and a server starting show only this message: it must say which
    # file to fix, as the file-level errors do.
    path = tmp_path / "tokens.json"
    _issue(path)
    _with_entry(path, roles=["root"])
    with pytest.raises(ValueError, match=r"tokens\[0\]\.roles") as refused:
        tokens.read_file(path)
    assert str(path) in str(refused.value)


def test_an_entry_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"format": 1, "tokens": ["mrm_x"]}')
    with pytest.raises(ValueError, match=r"tokens\[0\]: want an object"):
        tokens.read_file(path)


def test_a_token_listed_twice_is_refused_by_its_id(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _, token_id = _issue(path)
    doc = json.loads(path.read_text())
    doc["tokens"].append(doc["tokens"][0])
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{path}: token {token_id} is listed twice"):
        tokens.read_file(path)


@pytest.mark.parametrize(
    "principal", ["", "has space", "-dash", "x" * 201, "new\nline", "ci:a b"], ids=repr
)
def test_issue_refuses_a_bad_principal_name(principal: str) -> None:
    entries: list[tokens.TokenEntry] = []
    with pytest.raises(ValueError, match="--principal"):
        tokens.issue(entries, principal, ("deployer",), issued_by="admin")
    assert entries == []


@pytest.mark.parametrize(
    ("roles", "said"),
    [(("root",), "'root' is not a role"), ((), "at least one role"), (("Admin",), "'Admin'")],
)
def test_issue_refuses_unknown_roles(roles: tuple[str, ...], said: str) -> None:
    entries: list[tokens.TokenEntry] = []
    with pytest.raises(ValueError, match="--role") as refused:
        tokens.issue(entries, "ops@example.com", roles, issued_by="admin")
    assert said in str(refused.value)
    assert entries == []


def test_issue_refuses_an_empty_model_glob_rather_than_write_an_unreadable_file(
    tmp_path: Path,
) -> None:
    # read_file refuses an entry whose models hold "" (tokens[i].models), so issue
    # must refuse it too: once written, every later read of the file fails.
    path = tmp_path / "tokens.json"
    _issue(path, "first@example.com")
    with contextlib.suppress(ValueError), tokens.editing(path) as entries:
        tokens.issue(entries, "ops@example.com", ("deployer",), models=("",), issued_by="a")
    assert [e.principal for e in tokens.read_file(path)] == ["first@example.com"]


def test_issue_without_models_covers_every_model() -> None:
    _, entry = tokens.issue([], "ops@example.com", ("deployer",), models=(), issued_by="a")
    assert entry.models == ("*",)


def test_revoke_by_id_revokes_only_that_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _, first = _issue(path, "x@example.com")
    _, second = _issue(path, "x@example.com")
    with tokens.editing(path) as entries:
        done = tokens.revoke(entries, first, revoked_by="sec", now_us=NOW_US)
    assert [e.id for e in done] == [first]
    by_id = {e.id: e for e in tokens.read_file(path)}
    assert (by_id[first].revoked_at, by_id[first].revoked_by) == ("2030-03-17T17:46:40Z", "sec")
    assert by_id[second].revoked_at == ""


def test_revoke_by_principal_revokes_each_of_its_live_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _issue(path, "x@example.com")
    _issue(path, "x@example.com")
    _, other = _issue(path, "y@example.com")
    with tokens.editing(path) as entries:
        done = tokens.revoke(entries, "x@example.com", revoked_by="sec")
    assert {e.principal for e in done} == {"x@example.com"}
    assert len(done) == 2
    live = [e.id for e in tokens.read_file(path) if not e.revoked_at]
    assert live == [other]


def test_revoke_keeps_the_first_revocation_of_a_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _, token_id = _issue(path, "x@example.com")
    with tokens.editing(path) as entries:
        tokens.revoke(entries, token_id, revoked_by="first", now_us=NOW_US)
        with pytest.raises(ValueError, match=f"no live token has the id or principal '{token_id}'"):
            tokens.revoke(entries, token_id, revoked_by="second")
    assert tokens.read_file(path)[0].revoked_by == "first"


def test_revoke_of_nothing_known_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("'nobody@example.com'")):
        tokens.revoke([], "nobody@example.com", revoked_by="a")
