"""Leaf seals keep the values the ledger has always written (vectors computed
with the hand-rolled RFC 2104 implementation that preceded the standard library's)."""

from __future__ import annotations

from mrm.ledger.seal import Sealer, seal

KEY = bytes(range(32))
LEAF = bytes(range(100, 132))


def test_known_vectors() -> None:
    want = bytes.fromhex("f47b0e2a1036bde65657a5a878405192518b2968ea65b740584f20bbf10c56e1")
    assert seal(KEY, 123456789, LEAF) == want
    assert Sealer(KEY).seal(123456789, LEAF) == want
    assert Sealer(KEY).ok(123456789, LEAF, want)
    assert not Sealer(KEY).ok(123456790, LEAF, want)


def test_a_key_longer_than_a_block_is_hashed_first() -> None:
    want = bytes.fromhex("cff3414d0c2e7061c64c1c0abc306cca460439bf6a959907e76941e26bfce75f")
    assert Sealer(b"k" * 100).seal(0, LEAF) == want
