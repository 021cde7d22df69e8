"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

Byte-compatible with Go's golang.org/x/mod/sumdb/note, so checkpoints signed
here verify with the Go tooling (and witnesses) and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # EM DASH, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(Exception):
    """A signed note or a note key is malformed, or its signatures do not verify."""


def _check_name(name: str) -> None:
    # Go rejects Unicode spaces and '+'; control characters are rejected too,
    # since a note may not contain them and such a key could never sign one.
    if not name:
        raise NoteError("key name is empty")
    if "+" in name or any(c.isspace() or c < " " for c in name):
        raise NoteError(f"key name {name!r} contains '+', a space or a control character")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"{what} is not valid base64") from e


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def compute_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4], as C2SP recommends."""
    material = name.encode() + b"\n" + bytes([ALG_ED25519]) + _raw_public(public_key)
    return hashlib.sha256(material).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A named public key that checks note signatures."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` is this key's signature of `msg`."""
        if len(sig) != 64:
            return False
        try:
            self.public_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named private key that signs notes. Keep `encode()` secret."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_private_key(cls, name: str, private_key: Ed25519PrivateKey) -> Signer:
        """A signer for `private_key` under `name`, with its key ID derived."""
        _check_name(name)
        return cls(name, compute_key_id(name, private_key.public_key()), private_key)

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `msg`."""
        return self.private_key.sign(msg)

    def vkey(self) -> str:
        """The verifier key string to hand to verifiers."""
        return make_vkey(self.name, self.private_key.public_key())

    def encode(self) -> str:
        """The secret signer key string, PRIVATE+KEY+name+keyid+base64(0x01 || seed)."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{b64}"


def make_vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """The verifier key string name+hex8(keyid)+base64(0x01 || public key)."""
    _check_name(name)
    b64 = base64.b64encode(bytes([ALG_ED25519]) + _raw_public(public_key)).decode()
    return f"{name}+{compute_key_id(name, public_key).hex()}+{b64}"


def _parse_key(text: str, what: str) -> tuple[str, bytes, bytes]:
    """Split name+hex8+base64 into (name, key id, 32 raw key bytes)."""
    name, _, rest = text.partition("+")
    hex8, _, b64 = rest.partition("+")
    _check_name(name)
    if not _HEX8.fullmatch(hex8):
        raise NoteError(f"{what} key ID {hex8!r} is not 8 hex digits")
    raw = _b64decode(b64, f"{what} key material")
    if not raw or raw[0] != ALG_ED25519:
        raise NoteError(f"{what} uses an unknown algorithm (only Ed25519, 0x01, is supported)")
    if len(raw) != 33:
        raise NoteError(f"{what} Ed25519 key must be 32 bytes, got {len(raw) - 1}")
    return name, bytes.fromhex(hex8), raw[1:]


def parse_vkey(vkey: str) -> Verifier:
    """Parse a verifier key string, checking that its key ID matches the key."""
    name, key_id, raw = _parse_key(vkey, "verifier key")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise NoteError(f"verifier key for {name!r} is not a valid Ed25519 public key") from e
    if compute_key_id(name, public_key) != key_id:
        raise NoteError(f"verifier key ID {key_id.hex()} does not match the key for {name!r}")
    return Verifier(name, key_id, public_key)


def parse_signer_key(s: str) -> Signer:
    """Parse a PRIVATE+KEY+... signer key, checking its key ID against the derived public key."""
    if not s.startswith(_PRIVATE_PREFIX):
        raise NoteError("signer key must start with PRIVATE+KEY+")
    name, key_id, seed = _parse_key(s[len(_PRIVATE_PREFIX) :], "signer key")
    signer = Signer.from_private_key(name, Ed25519PrivateKey.from_private_bytes(seed))
    if signer.key_id != key_id:
        raise NoteError(f"signer key ID {key_id.hex()} does not match the key for {name!r}")
    return signer


def generate_signer(name: str) -> Signer:
    """A fresh random Ed25519 signer for `name`."""
    return Signer.from_private_key(name, Ed25519PrivateKey.generate())


@dataclass(frozen=True)
class Note:
    """The text of a note whose signatures verified, and who signed it."""

    text: str
    verified: tuple[str, ...]  # names of the known keys whose signatures verified


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """text + blank line + one signature line per signer."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteError("note text contains a control character other than newline")
    if not signers:
        raise NoteError("a note needs at least one signer")
    msg = text.encode()
    lines = []
    for s in signers:
        _check_name(s.name)
        b64 = base64.b64encode(s.key_id + s.sign(msg)).decode()
        lines.append(f"{_SIG_PREFIX}{s.name} {b64}\n")
    return text + "\n" + "".join(lines)


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier | None]:
    # None marks a (name, key ID) shared by two different keys: using either
    # would be a guess, so such a signature is an error, as in Go.
    known: dict[tuple[str, bytes], Verifier | None] = {}
    for v in verifiers:
        k = (v.name, v.key_id)
        prev = known.get(k, v)
        same = prev is not None and _raw_public(prev.public_key) == _raw_public(v.public_key)
        known[k] = v if same else None
    return known


def _parse(note: bytes | str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a note into its text and (name, key ID, signature) triples, checking the syntax."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError("note is not valid UTF-8") from e
    else:
        try:
            note.encode("utf-8")
        except UnicodeEncodeError as e:
            raise NoteError("note is not valid UTF-8 (it contains a lone surrogate)") from e
    if _CONTROL.search(note):
        raise NoteError("note contains a control character other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating the text from the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note's signature block is empty or does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than the {MAX_SIGNATURES} allowed")
    sigs = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}: must start with an em dash")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        _check_name(name)
        sig = _b64decode(b64, f"signature by {name}") if b64 else b""
        if len(sig) < 5:
            raise NoteError(f"signature by {name} is too short")
        sigs.append((name, sig[:4], sig[4:]))
    return text, sigs


def unverified_text(note: bytes | str) -> str:
    """The text of a well-formed signed note, WITHOUT checking any signature.

    For showing or cross-checking a note when no verifier key is at hand;
    never trust what it returns.
    """
    return _parse(note)[0]


def open_note(note: bytes | str, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and verify it with the known `verifiers`.

    Signatures by unknown keys are ignored; a bad signature by a known key, or
    no signature by any known key, rejects the note.
    """
    text, sigs = _parse(note)
    known = _index_verifiers(verifiers)
    msg = text.encode()
    verified: list[str] = []
    others: list[str] = []
    for name, key_id, sig in sigs:
        if (name, key_id) not in known:
            others.append(f"{name}+{key_id.hex()}")
            continue
        v = known[name, key_id]
        if v is None:
            raise NoteError(f"ambiguous key {name}+{key_id.hex()}: two verifiers share it")
        if not v.verify(msg, sig):
            raise NoteError(f"invalid signature by {name}")
        if name not in verified:
            verified.append(name)
    if not verified:
        raise NoteError(f"no signature by a known key; note signed by: {', '.join(others)}")
    return Note(text, tuple(verified))
