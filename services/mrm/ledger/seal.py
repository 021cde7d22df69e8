"""Leaf seals: the ledger's own mark on every row it writes.

The signed checkpoints protect what they cover. Leaves appended after the
latest checkpoint are protected by a seal: HMAC-SHA-256, under a key derived
from the log's signing key, over the leaf's index and hash. Someone with write
access to the database but not to the key file cannot produce one, so a row
slipped in around the ledger is caught before any checkpoint covers it, and
the ledger refuses to sign it.
"""

from __future__ import annotations

import hashlib
import hmac

from mrm.tlog.note import Signer

_CONTEXT = b"mrm ledger leaf seal v1\n"
_BLOCK = 64  # SHA-256's block size


def seal_key(signer: Signer) -> bytes:
    return hashlib.sha256(_CONTEXT + signer.private_key.private_bytes_raw()).digest()


def seal(key: bytes, leaf_index: int, leaf_hash: bytes) -> bytes:
    return hmac.digest(key, leaf_index.to_bytes(8, "big") + leaf_hash, "sha256")


def seal_ok(key: bytes, leaf_index: int, leaf_hash: bytes, value: bytes) -> bool:
    return hmac.compare_digest(seal(key, leaf_index, leaf_hash), value)


class Sealer:
    """`seal` for one key, from precomputed HMAC states (RFC 2104).

    Every appended leaf is sealed once and checked once before signing; keyed
    with the inner and outer pads hashed ahead, a seal costs two state copies
    instead of a fresh HMAC setup (about 0.8 µs instead of 2).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def seal(self, leaf_index: int, leaf_hash: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(leaf_index.to_bytes(8, "big") + leaf_hash)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def ok(self, leaf_index: int, leaf_hash: bytes, value: bytes) -> bool:
        return hmac.compare_digest(self.seal(leaf_index, leaf_hash), value)
