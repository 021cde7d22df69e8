"""The trust store: learning keys, pinning, and catching rollbacks and forks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrm.client.configdir import config_dir, safe_name
from mrm.client.trust import TrustConfigError, TrustError, TrustStore
from mrm.tlog.note import generate_signer
from tests.support.fake_log import FakeLog


class Announcements(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def make_store(tmp_path: Path, pinned: str | None = None) -> tuple[TrustStore, Announcements]:
    said = Announcements()
    return TrustStore(tmp_path / "cfg", pinned_vkey=pinned, announce=said), said


def no_proof(old: int, new: int) -> list[bytes]:
    raise AssertionError(f"no consistency proof expected ({old} -> {new})")


def test_config_dir_precedence(tmp_path: Path) -> None:
    home = Path.home()
    assert config_dir({}) == home / ".config" / "mrm"
    assert config_dir({"XDG_CONFIG_HOME": "/x"}) == Path("/x/mrm")
    assert config_dir({"XDG_CONFIG_HOME": "/x", "MRM_CONFIG_DIR": "/y"}) == Path("/y")
    assert config_dir({"MRM_CONFIG_DIR": ""}) == home / ".config" / "mrm"


@pytest.mark.parametrize(
    "origin", ["mrm.example.com/prod", "../../etc/passwd", "/", "a b\\c", "..", "ü/日本"]
)
def test_safe_name_has_no_path_syntax(origin: str) -> None:
    name = safe_name(origin)
    assert "/" not in name
    assert "\\" not in name
    assert not name.startswith(".")
    assert safe_name(origin) == name
    assert safe_name(origin + "x") != name


def test_first_use_learns_the_key_and_says_so(tmp_path: Path) -> None:
    log = FakeLog().grow(3)
    store, said = make_store(tmp_path)
    trusted = store.check(log.checkpoint(), no_proof)
    assert (trusted.origin, trusted.size, trusted.root_hash) == (log.origin, 3, log.root(3))
    key_file = store.log_dir(log.origin) / "vkey"
    assert said == [
        f"mrmctl: trusting new log {log.origin} with key {log.vkey} (stored in {key_file})"
    ]
    assert store.known_vkey(log.origin) == log.vkey
    assert store.remembered_note(log.origin) == log.note(3)


def test_growth_is_checked_with_a_consistency_proof(tmp_path: Path) -> None:
    log = FakeLog().grow(5)
    store, said = make_store(tmp_path)
    store.check(log.checkpoint(), no_proof)
    log.grow(6)
    asked: list[tuple[int, int]] = []

    def prove(old: int, new: int) -> list[bytes]:
        asked.append((old, new))
        return log.prove(old, new)

    assert store.check(log.checkpoint(), prove).size == 11
    assert asked == [(5, 11)]
    assert store.remembered_note(log.origin) == log.note(11)
    # The same checkpoint again needs no proof, and no second announcement.
    store.check(log.checkpoint(), no_proof)
    assert len(said) == 1
    leftovers = [p.name for p in store.log_dir(log.origin).iterdir()]
    assert sorted(leftovers) == [".lock", "checkpoint", "vkey"]  # no temp files


def test_rollback_is_an_error_that_prints_both_notes(tmp_path: Path) -> None:
    log = FakeLog().grow(8)
    store, _ = make_store(tmp_path)
    store.check(log.checkpoint(), no_proof)
    with pytest.raises(TrustError, match=r"rolled back.*shows 5 leaves.*8 leaves") as err:
        store.check(log.checkpoint(5), no_proof)
    assert log.note(8).splitlines()[2] in err.value.details
    assert log.note(5).splitlines()[2] in err.value.details
    assert store.remembered_note(log.origin) == log.note(8)  # unchanged


def test_same_size_different_root_is_a_fork(tmp_path: Path) -> None:
    honest = FakeLog().grow(4)
    store, _ = make_store(tmp_path)
    store.check(honest.checkpoint(), no_proof)
    fork = FakeLog(signer=honest.signer).grow(4)
    with pytest.raises(TrustError, match="forked") as err:
        store.check(fork.checkpoint(), no_proof)
    assert honest.note(4).splitlines()[2] in err.value.details
    assert fork.note(4).splitlines()[2] in err.value.details


def test_larger_tree_that_does_not_extend_is_a_fork(tmp_path: Path) -> None:
    honest = FakeLog().grow(4)
    store, _ = make_store(tmp_path)
    store.check(honest.checkpoint(), no_proof)
    fork = FakeLog(signer=honest.signer).grow(9)
    with pytest.raises(TrustError, match=r"forked.*9 leaves does not extend"):
        store.check(fork.checkpoint(), fork.prove)
    assert store.remembered_note(honest.origin) == honest.note(4)


def test_a_known_origin_with_a_new_key_is_refused(tmp_path: Path) -> None:
    log = FakeLog().grow(2)
    store, _ = make_store(tmp_path)
    store.check(log.checkpoint(), no_proof)
    impostor = FakeLog(signer=generate_signer(log.origin)).grow(2)
    with pytest.raises(TrustError, match="now presents key"):
        store.check(impostor.checkpoint(), no_proof)
    assert store.known_vkey(log.origin) == log.vkey


def test_pinned_key_is_used_and_stored_silently(tmp_path: Path) -> None:
    log = FakeLog().grow(2)
    store, said = make_store(tmp_path, pinned=log.vkey)
    store.check(log.checkpoint(), no_proof)
    assert said == []
    assert store.known_vkey(log.origin) == log.vkey


def test_pinned_key_must_sign_the_note(tmp_path: Path) -> None:
    log = FakeLog().grow(2)
    other = generate_signer(log.origin)
    store, _ = make_store(tmp_path, pinned=other.vkey())
    with pytest.raises(TrustError, match="does not verify"):
        store.check(log.checkpoint(), no_proof)
    assert store.known_vkey(log.origin) is None  # nothing learned from a failed check


def test_pinned_key_must_match_the_stored_one(tmp_path: Path) -> None:
    log = FakeLog().grow(2)
    store, _ = make_store(tmp_path)
    store.check(log.checkpoint(), no_proof)
    pinned, _ = make_store(tmp_path, pinned=generate_signer(log.origin).vkey())
    with pytest.raises(TrustError, match="MRM_LEDGER_VKEY pins key"):
        pinned.check(log.checkpoint(), no_proof)


def test_malformed_pinned_key(tmp_path: Path) -> None:
    with pytest.raises(TrustConfigError, match="MRM_LEDGER_VKEY"):
        make_store(tmp_path, pinned="not-a-key")


def test_from_env_reads_the_pin(tmp_path: Path) -> None:
    log = FakeLog()
    store = TrustStore.from_env({"MRM_CONFIG_DIR": str(tmp_path), "MRM_LEDGER_VKEY": log.vkey})
    assert store.directory == tmp_path
    assert store.verifier(log.origin) is not None


def test_fields_must_agree_with_the_signed_note(tmp_path: Path) -> None:
    log = FakeLog().grow(3)
    cp = log.checkpoint()
    cp.tree_size = 4
    store, _ = make_store(tmp_path)
    with pytest.raises(TrustError, match="disagree with its signed note"):
        store.check(cp, no_proof)


def test_bad_signature_is_refused_on_first_use(tmp_path: Path) -> None:
    log = FakeLog().grow(3)
    cp = log.checkpoint()
    cp.note = cp.note.replace("\n3\n", "\n4\n")
    store, said = make_store(tmp_path)
    with pytest.raises(TrustError, match="invalid signature"):
        store.check(cp, no_proof)
    assert said == []
    assert store.known_vkey(log.origin) is None


def test_tampered_remembered_checkpoint_is_reported(tmp_path: Path) -> None:
    log = FakeLog().grow(3)
    store, _ = make_store(tmp_path)
    store.check(log.checkpoint(), no_proof)
    path = store.log_dir(log.origin) / "checkpoint"
    path.write_text(path.read_text().replace("\n3\n", "\n2\n"))
    with pytest.raises(TrustError, match="delete it to start over"):
        store.check(log.grow(1).checkpoint(), log.prove)
