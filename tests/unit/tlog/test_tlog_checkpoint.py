"""C2SP tlog-checkpoint bodies."""

from __future__ import annotations

import base64

import pytest

from mrm.tlog.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from mrm.tlog.merkle import EMPTY_ROOT
from mrm.tlog.note import generate_signer, open_note, parse_vkey, sign_note

# The example in the C2SP tlog-checkpoint specification.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


def test_spec_example_parses_and_round_trips() -> None:
    cp = parse_checkpoint(SPEC_BODY)
    assert cp == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert cp.text() == SPEC_BODY


def test_extension_lines_are_kept() -> None:
    body = SPEC_BODY + "ext one\nextension: two\n"
    cp = parse_checkpoint(body)
    assert cp.extensions == ("ext one", "extension: two")
    assert cp.text() == body


def test_empty_tree() -> None:
    cp = Checkpoint("example.com/log", 0, EMPTY_ROOT)
    assert parse_checkpoint(cp.text()) == cp
    assert cp.text().splitlines()[1] == "0"


def test_signed_checkpoint_round_trip() -> None:
    signer = generate_signer("example.com/log")
    cp = Checkpoint("example.com/log", 12, ROOT)
    note = open_note(sign_note(cp.text(), [signer]), [parse_vkey(signer.vkey())])
    assert parse_checkpoint(note.text) == cp


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("example.com/log\n12\n" + ROOT_B64, "must end with a newline"),
        ("example.com/log\n12\n", "has 2 lines"),
        ("\n12\n" + ROOT_B64 + "\n", "origin line is empty"),
        ("example.com/log\n012\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n00\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n-1\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n+1\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n 1\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n1.0\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n1_000\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n\u0661\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n\n" + ROOT_B64 + "\n", "not a decimal number"),
        ("example.com/log\n18446744073709551616\n" + ROOT_B64 + "\n", "64 bits"),
        ("example.com/log\n12\nnot base64!\n", "not valid base64"),
        ("example.com/log\n12\n" + ROOT_B64[:-1] + "\n", "not valid base64"),
        ("example.com/log\n12\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "31 bytes"),
        ("example.com/log\n12\n\n", "not valid base64|0 bytes"),
        ("example.com/log\n12\n" + ROOT_B64 + "\n\n", "extension line 1 is empty"),
        ("example.com/log\n12\n" + ROOT_B64 + "\next\n\nmore\n", "extension line 2 is empty"),
    ],
)
def test_malformed_checkpoints_say_why(body: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        parse_checkpoint(body)


def test_largest_size_is_accepted() -> None:
    body = f"example.com/log\n{2**64 - 1}\n{ROOT_B64}\n"
    assert parse_checkpoint(body).size == 2**64 - 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"origin": ""}, "origin"),
        ({"origin": "two\nlines"}, "origin"),
        ({"size": -1}, "out of range"),
        ({"root_hash": b"short"}, "32 bytes"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ("a\nb",)}, "extension"),
    ],
)
def test_checkpoint_refuses_unsignable_fields(kwargs: dict[str, object], reason: str) -> None:
    fields: dict[str, object] = {"origin": "example.com/log", "size": 1, "root_hash": ROOT}
    fields.update(kwargs)
    with pytest.raises(CheckpointError, match=reason):
        Checkpoint(**fields)  # type: ignore[arg-type]
