"""Signed notes against the C2SP spec and Go's sumdb/note, byte for byte."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mrm.tlog.note import (
    Note,
    NoteError,
    Signer,
    Verifier,
    generate_signer,
    make_vkey,
    open_note,
    parse_signer_key,
    parse_vkey,
    sign_note,
    unverified_text,
)

# The example of the Go package's documentation and tests (golang.org/x/mod/sumdb/note).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
PETER_SIG = f"\u2014 PeterNeumann {PETER_B64}\n"
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG


@pytest.fixture
def peter() -> Verifier:
    return parse_vkey(PETER_VKEY)


@pytest.fixture
def enoch() -> Verifier:
    return parse_vkey(ENOCH_VKEY)


def test_spec_example_verifies(peter: Verifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_id.hex() == "c74f20a3"
    assert open_note(PETER_NOTE, [peter]) == Note(TEXT, ("PeterNeumann",))
    assert open_note(PETER_NOTE.encode(), [peter]).text == TEXT


def test_spec_signer_reproduces_the_published_note() -> None:
    # Ed25519 is deterministic, so signing the example must give the example.
    signer = parse_signer_key(PETER_SKEY)
    assert signer.key_id.hex() == "c74f20a3"
    assert sign_note(TEXT, [signer]) == PETER_NOTE
    assert signer.vkey() == PETER_VKEY
    assert signer.encode() == PETER_SKEY
    assert "AYEKF" not in repr(signer)


def test_every_mangled_verifier_key_is_refused() -> None:
    # As Go's TestNewVerifier: every proper substring and every one-byte change.
    for i in range(len(PETER_VKEY)):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        with pytest.raises(NoteError):
            parse_vkey(PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :])


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        # Key IDs adjusted to the mangled key, from Go's tests.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "must be 32 bytes",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "unknown algorithm"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("Peter\u00a0Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name is empty"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
    ],
)
def test_bad_verifier_keys_say_why(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_vkey(vkey)


def test_every_mangled_signer_key_is_refused() -> None:
    for i in range(len(PETER_SKEY)):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(NoteError):
                    parse_signer_key(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        with pytest.raises(NoteError):
            parse_signer_key(PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :])


def test_unknown_keys_are_ignored(peter: Verifier, enoch: Verifier) -> None:
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, [peter]).verified == ("PeterNeumann",)
    assert open_note(both, [enoch]).verified == ("EnochRoot",)
    assert open_note(both, [peter, enoch]).verified == ("PeterNeumann", "EnochRoot")


def test_no_known_key_rejects_and_names_the_signers() -> None:
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    other = generate_signer("example.com/other")
    verifier = parse_vkey(other.vkey())
    with pytest.raises(
        NoteError,
        match=r"no signature by a known key; note signed by: "
        r"PeterNeumann\+c74f20a3, EnochRoot\+af0cfe78",
    ):
        open_note(both, [verifier])


def test_same_name_other_key_id_is_an_unknown_key(peter: Verifier) -> None:
    # Only the (name, key ID) pair identifies a key: a matching name alone is not enough.
    impostor = generate_signer("PeterNeumann")
    note = sign_note(TEXT, [impostor])
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(note, [peter])


def test_known_key_with_bad_signature_rejects_the_note(peter: Verifier) -> None:
    at = len("\u2014 PeterNeumann ") + 43  # where Go's test splices, inside the base64
    bad = TEXT + "\n" + PETER_SIG[:at] + "ABCD" + PETER_SIG[at:]
    with pytest.raises(NoteError, match="invalid signature by PeterNeumann"):
        open_note(bad, [peter])
    tampered = PETER_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(NoteError, match="invalid signature by PeterNeumann"):
        open_note(tampered, [peter])
    # A bad signature is fatal even when another known key signed correctly.
    forged = TEXT + "\n" + ENOCH_SIG + PETER_SIG[:at] + "ABCD" + PETER_SIG[at:]
    with pytest.raises(NoteError, match="invalid signature by PeterNeumann"):
        open_note(forged, [peter, parse_vkey(ENOCH_VKEY)])


def test_repeated_signature_counts_once(peter: Verifier) -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * 3, [peter]).verified == ("PeterNeumann",)


def test_signature_limit(peter: Verifier) -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * 100, [peter]).verified == ("PeterNeumann",)
    with pytest.raises(NoteError, match="101 signatures, more than the 100 allowed"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [peter])


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        # Go's malformed-message table.
        (TEXT, "no blank line"),
        (TEXT + "\n", "signature block is empty"),
        (TEXT + "\n" + PETER_SIG[:-1], "does not end with a newline"),
        ("\x01" + TEXT + "\n" + PETER_SIG, "control character"),
        (b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), "not valid UTF-8"),
        (TEXT + "\n\u2014 Bad Name " + PETER_B64 + "\n", "base64"),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "must start with an em dash"),
        # And the rest of the C2SP rules.
        (TEXT + PETER_SIG, "no blank line"),
        (TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG, "control character"),
        (TEXT + "\n" + PETER_SIG.replace(" ", "\t", 1), "control character"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014", "-"), "must start with an em dash"),
        (TEXT + "\n\u2014 PeterNeumann\n", "too short"),
        (TEXT + "\n\u2014 PeterNeumann AAAAAA==\n", "too short"),
        (TEXT + "\n\u2014 Peter\u2003Neumann " + PETER_B64 + "\n", "key name"),
        (TEXT + "\n\u2014 Peter+Neumann " + PETER_B64 + "\n", "key name"),
        (TEXT + "\n\u2014  " + PETER_B64 + "\n", "key name is empty"),
        (TEXT + "\ud800\n\n" + PETER_SIG, "lone surrogate"),
    ],
)
def test_malformed_notes_say_why(note: str | bytes, reason: str, peter: Verifier) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(note, [peter])


def test_round_trip_with_generated_keys() -> None:
    a, b = generate_signer("example.com/log"), generate_signer("witness.example/w1")
    text = "example.com/log\n12\n\nblank lines are allowed inside the text\n"
    note = sign_note(text, [a, b])
    assert note.startswith(text + "\n\u2014 example.com/log ")
    verifiers = [parse_vkey(a.vkey()), parse_vkey(b.vkey())]
    assert open_note(note, verifiers) == Note(text, ("example.com/log", "witness.example/w1"))
    assert open_note(note.encode(), verifiers[1:]).verified == ("witness.example/w1",)
    assert unverified_text(note) == text
    again = parse_signer_key(a.encode())
    assert again.key_id == a.key_id
    assert sign_note(text, [again]) == sign_note(text, [a])


def test_make_vkey_matches_signer() -> None:
    key = Ed25519PrivateKey.generate()
    signer = Signer.from_private_key("example.com/log", key)
    assert make_vkey("example.com/log", key.public_key()) == signer.vkey()
    assert parse_vkey(signer.vkey()).key_id == signer.key_id


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0", "ideo\u3000"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        generate_signer(name)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("no newline", "must end with a newline"), ("bell\x07\n", "control character")],
)
def test_sign_note_refuses_bad_text(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        sign_note(text, [generate_signer("example.com/log")])


def test_sign_note_needs_a_signer() -> None:
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])


def test_ambiguous_verifiers_are_an_error(peter: Verifier) -> None:
    # Two different keys claiming the same name and key ID: refuse to guess.
    clash = Verifier(peter.name, peter.key_id, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="ambiguous key PeterNeumann\\+c74f20a3"):
        open_note(PETER_NOTE, [peter, clash])
    assert open_note(PETER_NOTE, [peter, parse_vkey(PETER_VKEY)]).verified == ("PeterNeumann",)
