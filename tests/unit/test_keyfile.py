"""Secrets in files: created once with mode 0600, read back, refused in one line when broken."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mrm.core.errors import FailedPrecondition
from mrm.core.keyfile import load_or_create_subject_key, read_or_create
from mrm.ledger.checkpoint import load_or_create_key


def test_created_once_with_mode_0600_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "subject.key"
    first = load_or_create_subject_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) == 32
    assert load_or_create_subject_key(path) == first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    signer = load_or_create_key(tmp_path / "ledger.key", "example.com/log")
    assert load_or_create_key(tmp_path / "ledger.key", "ignored").vkey() == signer.vkey()


def test_a_secret_created_meanwhile_by_another_process_wins(tmp_path: Path) -> None:
    path = tmp_path / "subject.key"

    def racing() -> str:  # the other process links its key in while we generate ours
        path.write_text("ab" * 32 + "\n")
        return "cd" * 32

    key, created = read_or_create(path, "subject key file", racing, bytes.fromhex)
    assert (key, created) == (bytes.fromhex("ab" * 32), False)
    assert path.read_text() == "ab" * 32 + "\n"


@pytest.mark.parametrize("content", [b"not hex\n", b"", b"abcd\n", b"\xff\xfe"])
def test_a_broken_subject_key_is_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "subject.key"
    path.write_bytes(content)
    with pytest.raises(FailedPrecondition, match=r"subject key file .*subject.key") as err:
        load_or_create_subject_key(path)
    assert "\n" not in err.value.message
    assert path.read_bytes() == content  # left as it was


def test_a_broken_ledger_key_is_refused_and_a_loose_one_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.key"
    path.write_text("PRIVATE+KEY+garbage\n")
    with pytest.raises(FailedPrecondition, match="ledger key file"):
        load_or_create_key(path, "example.com/log")
    good = tmp_path / "good.key"
    load_or_create_key(good, "example.com/log")
    good.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_or_create_key(good, "example.com/log")
    assert "chmod 600" in caplog.text
