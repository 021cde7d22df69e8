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


def seal_key(signer: Signer) -> bytes:
    return hashlib.sha256(_CONTEXT + signer.private_key.private_bytes_raw()).digest()


def seal(key: bytes, leaf_index: int, leaf_hash: bytes) -> bytes:
    return hmac.new(key, leaf_index.to_bytes(8, "big") + leaf_hash, "sha256").digest()


class Sealer:
    """`seal` for one key. Every appended leaf is sealed once and checked once
    before signing, so the keyed HMAC is set up once and copied per leaf."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod="sha256")

    def seal(self, leaf_index: int, leaf_hash: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(leaf_index.to_bytes(8, "big") + leaf_hash)
        return mac.digest()

    def ok(self, leaf_index: int, leaf_hash: bytes, value: bytes) -> bool:
        return hmac.compare_digest(self.seal(leaf_index, leaf_hash), value)
