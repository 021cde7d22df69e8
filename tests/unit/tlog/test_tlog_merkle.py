"""RFC 6962 hashing and proofs against the RFC's definitions and published answers."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mrm.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    TreeBuilder,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# --- The reference: RFC 6962 §2.1, §2.1.1 and §2.1.2 transcribed literally. ---
# D[lo:hi] is passed as (leaves, lo, hi) so the recursion does not copy lists.


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(d: list[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[lo]
    k = _k(n)
    return node_hash(mth(d, lo, lo + k), mth(d, lo + k, hi))


def rfc_path(m: int, d: list[bytes], lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*rfc_path(m, d, lo, lo + k), mth(d, lo + k, hi)]
    return [*rfc_path(m - k, d, lo + k, hi), mth(d, lo, lo + k)]


def rfc_subproof(m: int, d: list[bytes], lo: int, hi: int, b: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if b else [mth(d, lo, hi)]
    k = _k(n)
    if m <= k:
        return [*rfc_subproof(m, d, lo, lo + k, b), mth(d, lo + k, hi)]
    return [*rfc_subproof(m - k, d, lo + k, hi, False), mth(d, lo, lo + k)]


def rfc_proof(m: int, d: list[bytes]) -> list[bytes]:
    return rfc_subproof(m, d, 0, len(d), True)


def leaves(n: int) -> list[bytes]:
    # Distinct leaves: with equal neighbours a proof for index m also proves m + 1.
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# --- Published answers (Certificate Transparency / transparency-dev test data). ---

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
_H = bytes.fromhex
# (leaf index, tree size, path) and (old size, new size, path).
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, [_H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            _H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [_H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            _H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            _H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [_H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [_H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            _H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]  # fmt: skip
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [_H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            _H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [_H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            _H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            _H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [_H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [_H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            _H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            _H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]  # fmt: skip
CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]


def test_empty_tree_and_empty_leaf_known_answers() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert TreeBuilder().root() == EMPTY_ROOT
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert HASH_SIZE == 32


@pytest.mark.parametrize("size", range(9))
def test_roots_match_certificate_transparency(size: int) -> None:
    hashes = CT_LEAF_HASHES[:size]
    builder = TreeBuilder()
    for h in hashes:
        builder.append(h)
    assert root_from_leaf_hashes(hashes) == CT_ROOTS[size]
    assert builder.root() == CT_ROOTS[size]
    assert mth(hashes, 0, size) == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_known_answers(index: int, size: int, path: list[bytes]) -> None:
    assert rfc_path(index, CT_LEAF_HASHES[:size], 0, size) == path
    verify_inclusion(CT_LEAF_HASHES[index], index, size, path, CT_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_consistency_known_answers(old: int, new: int, path: list[bytes]) -> None:
    assert rfc_proof(old, CT_LEAF_HASHES[:new]) == path
    verify_consistency(old, new, path, CT_ROOTS[old], CT_ROOTS[new])


def test_tree_builder_matches_every_prefix() -> None:
    hashes = leaves(300)
    builder = TreeBuilder()
    for n in range(len(hashes) + 1):
        assert builder.size == n
        want = mth(hashes, 0, n)
        assert builder.root() == want, n
        assert root_from_leaf_hashes(hashes[:n]) == want, n
        if n < len(hashes):
            builder.append(hashes[n])


def test_tree_builder_rejects_wrong_sized_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TreeBuilder().append(b"leaf bytes, not a hash")


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def _assert_rejects(check: Callable[[], None], what: str) -> None:
    try:
        check()
    except ProofError:
        return
    pytest.fail(f"accepted a proof with {what}")


def _inclusion_mutations(
    lh: bytes, m: int, n: int, path: list[bytes], root: bytes
) -> Iterator[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    for i in range(len(path)):
        yield f"path[{i}] flipped", (lh, m, n, [*path[:i], _flip(path[i]), *path[i + 1 :]], root)
    yield "leaf flipped", (_flip(lh), m, n, path, root)
    yield "root flipped", (lh, m, n, path, _flip(root, 7))
    yield "index - 1", (lh, m - 1, n, path, root)
    yield "index + 1", (lh, m + 1, n, path, root)
    yield "size * 2", (lh, m, n * 2, path, root)
    yield "size // 2", (lh, m, n // 2, path, root)
    if path:
        yield "truncated path", (lh, m, n, path[:-1], root)
        yield "first hash dropped", (lh, m, n, path[1:], root)
    yield "extra hash", (lh, m, n, [*path, root], root)
    yield "empty root", (lh, m, n, path, EMPTY_ROOT)


def _check_inclusion(hashes: list[bytes], m: int) -> None:
    n = len(hashes)
    path = rfc_path(m, hashes, 0, n)
    root = mth(hashes, 0, n)
    assert root_from_inclusion_proof(hashes[m], m, n, path) == root
    verify_inclusion(hashes[m], m, n, path, root)
    for what, args in _inclusion_mutations(hashes[m], m, n, path, root):
        _assert_rejects(functools.partial(verify_inclusion, *args), what)


def _consistency_mutations(
    m: int, n: int, path: list[bytes], r1: bytes, r2: bytes
) -> Iterator[tuple[str, tuple[int, int, list[bytes], bytes, bytes]]]:
    for i in range(len(path)):
        yield f"path[{i}] flipped", (m, n, [*path[:i], _flip(path[i], 4), *path[i + 1 :]], r1, r2)
    yield "old size - 1", (m - 1, n, path, r1, r2)
    yield "old size + 1", (m + 1, n, path, r1, r2)
    yield "new size * 2", (m, n * 2, path, r1, r2)
    yield "new size // 2", (m, n // 2, path, r1, r2)
    yield "old root flipped", (m, n, path, _flip(r1), r2)
    yield "new root flipped", (m, n, path, r1, _flip(r2))
    yield "swapped roots", (m, n, path, r2, r1)
    yield "empty path", (m, n, [], r1, r2)
    yield "truncated path", (m, n, path[:-1], r1, r2)
    yield "extra hash", (m, n, [*path, r2], r1, r2)
    yield "old root prepended", (m, n, [r1, *path], r1, r2)


def _check_consistency(hashes: list[bytes], m: int) -> None:
    n = len(hashes)
    path = rfc_proof(m, hashes) if m > 0 else []  # the RFC defines PROOF for 0 < m only
    r1, r2 = mth(hashes, 0, m), mth(hashes, 0, n)
    verify_consistency(m, n, path, r1, r2)
    if 0 < m < n:
        for what, args in _consistency_mutations(m, n, path, r1, r2):
            _assert_rejects(functools.partial(verify_consistency, *args), what)


def test_every_small_proof_verifies_and_no_mutation_does() -> None:
    for n in range(1, 40):
        hashes = leaves(n)
        for m in range(n):
            _check_inclusion(hashes, m)
        for m in range(n + 1):
            _check_consistency(hashes, m)


@st.composite
def tree_and_index(draw: st.DrawFn, inclusive: bool) -> tuple[list[bytes], int]:
    n = draw(st.integers(min_value=1, max_value=3000))
    return leaves(n), draw(st.integers(min_value=0, max_value=n if inclusive else n - 1))


@settings(max_examples=150, deadline=None)
@given(tree_and_index(inclusive=False))
@example((leaves(2048), 1023))
@example((leaves(3000), 2999))
def test_inclusion_property(case: tuple[list[bytes], int]) -> None:
    _check_inclusion(*case)


@settings(max_examples=150, deadline=None)
@given(tree_and_index(inclusive=True))
@example((leaves(2048), 1024))
@example((leaves(3000), 2047))
@example((leaves(2999), 1501))
def test_consistency_property(case: tuple[list[bytes], int]) -> None:
    _check_consistency(*case)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((CT_LEAF_HASHES[0], 8, 8, [], CT_ROOTS[8]), "out of range"),
        ((CT_LEAF_HASHES[0], -1, 8, [], CT_ROOTS[8]), "out of range"),
        ((CT_LEAF_HASHES[0], 0, 0, [], EMPTY_ROOT), "out of range"),
        ((CT_LEAF_HASHES[0], 0, 8, [], CT_ROOTS[8]), "has 0 hashes; .* has 3"),
        ((b"short", 0, 1, [], CT_ROOTS[1]), "leaf hash must be 32 bytes"),
        ((CT_LEAF_HASHES[0], 0, 1, [], b"short"), "root hash must be 32 bytes"),
        ((CT_LEAF_HASHES[0], 0, 2, [b"x"], CT_ROOTS[2]), r"path element 0 must be 32 bytes"),
        ((CT_LEAF_HASHES[1], 0, 1, [], CT_ROOTS[1]), "root mismatch"),
    ],
)
def test_inclusion_reasons(args: tuple[bytes, int, int, list[bytes], bytes], reason: str) -> None:
    with pytest.raises(ProofError, match=reason):
        verify_inclusion(*args)


R = CT_ROOTS


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), None),
        ((0, 5, [], EMPTY_ROOT, R[5]), None),
        ((3, 3, [], R[3], R[3]), None),
        ((0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT), "must be empty"),
        ((0, 5, [EMPTY_ROOT], EMPTY_ROOT, R[5]), "must be empty"),
        ((0, 5, [], R[1], R[5]), "a tree of size 0 has root"),
        ((3, 3, [R[1]], R[3], R[3]), "must be empty"),
        ((3, 3, [], R[3], R[4]), "forked"),
        ((4, 3, [], R[4], R[3]), "never shrinks"),
        ((-1, 3, [], R[4], R[3]), "negative"),
        ((2, 5, [], R[2], R[5]), "has 0 hashes; .* has 2"),
        ((2, 5, CT_CONSISTENCY[3][2], R[2], b"short"), "new root must be 32 bytes"),
        ((6, 8, CT_CONSISTENCY[2][2], R[5], R[8]), "does not lead to the old root"),
        # A power-of-two old root is the proof's seed: a wrong one spoils the new root.
        ((2, 5, CT_CONSISTENCY[3][2], R[3], R[5]), "does not lead to the new root"),
        ((2, 5, CT_CONSISTENCY[3][2], R[2], R[4]), "does not lead to the new root"),
    ],
)
def test_consistency_edge_cases(
    args: tuple[int, int, list[bytes], bytes, bytes], reason: str | None
) -> None:
    if reason is None:
        verify_consistency(*args)
    else:
        with pytest.raises(ProofError, match=reason):
            verify_consistency(*args)
