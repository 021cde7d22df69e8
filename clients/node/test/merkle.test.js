// RFC 6962 known answers (Certificate Transparency's test vectors) and an
// exhaustive check of the iterative verifier against the RFC's recursive
// definition of PATH, for every leaf of every tree up to 40 leaves.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EMPTY_ROOT, ProofError, leafHash, nodeHash, rootFromInclusionProof, verifyInclusion } from '../src/merkle.js';

const H = (hex) => Buffer.from(hex, 'hex');
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(H);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(H);
const CT_INCLUSION = [
  [0, 8, ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4']],
  [5, 8, ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
  [2, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
  [1, 5, ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']],
];

// RFC 6962 §2.1: MTH and PATH, written as the RFC states them.
function split(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
function mth(hashes) {
  if (hashes.length === 0) return EMPTY_ROOT;
  if (hashes.length === 1) return hashes[0];
  const k = split(hashes.length);
  return nodeHash(mth(hashes.slice(0, k)), mth(hashes.slice(k)));
}
function path(m, hashes) {
  if (hashes.length <= 1) return [];
  const k = split(hashes.length);
  return m < k ? [...path(m, hashes.slice(0, k)), mth(hashes.slice(k))] : [...path(m - k, hashes.slice(k)), mth(hashes.slice(0, k))];
}

test('known answers: the empty root and the roots of the CT test tree', () => {
  const hashes = LEAVES.map(leafHash);
  for (let n = 0; n <= 8; n++) assert.deepEqual(mth(hashes.slice(0, n)), ROOTS[n], `root of ${n} leaves`);
});

test('known answers: CT inclusion proofs verify', () => {
  const hashes = LEAVES.map(leafHash);
  for (const [index, size, p] of CT_INCLUSION) {
    verifyInclusion(hashes[index], index, size, p.map(H), ROOTS[size]);
    assert.deepEqual(path(index, hashes.slice(0, size)), p.map(H));
  }
});

test('every leaf of every tree up to 40 leaves; any single change is rejected', () => {
  const hashes = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
  for (let n = 1; n <= 40; n++) {
    const root = mth(hashes.slice(0, n));
    for (let m = 0; m < n; m++) {
      const p = path(m, hashes.slice(0, n));
      verifyInclusion(hashes[m], m, n, p, root);
      assert.throws(() => verifyInclusion(hashes[(m + 1) % 40], m, n, p, root), ProofError);
      if (n > 1) assert.throws(() => verifyInclusion(hashes[m], m, n, p.slice(1), root), ProofError);
      assert.throws(() => verifyInclusion(hashes[m], m, n, [...p, root], root), ProofError);
      for (let i = 0; i < p.length; i++) {
        const bad = p.map((h) => Buffer.from(h));
        bad[i][0] ^= 1;
        assert.throws(() => verifyInclusion(hashes[m], m, n, bad, root), /root mismatch/);
      }
    }
  }
});

test('out of range indexes and malformed hashes are refused with a reason', () => {
  const h = leafHash(Buffer.from('x'));
  assert.throws(() => rootFromInclusionProof(h, 3, 3, []), /leaf index 3 is out of range for a tree of size 3/);
  assert.throws(() => rootFromInclusionProof(h, 0, 0, []), /out of range/);
  assert.throws(() => rootFromInclusionProof(h.subarray(1), 0, 1, []), /leaf hash must be 32 bytes, got 31 bytes/);
  assert.throws(() => rootFromInclusionProof(h, 0, 2, [Buffer.alloc(5)]), /inclusion path element 0 must be 32 bytes/);
  assert.throws(() => verifyInclusion(h, 0, 1, [], Buffer.alloc(3)), /root hash must be 32 bytes/);
});

test('tree sizes beyond 2**53 are handled exactly (BigInt)', () => {
  const size = 2n ** 60n + 5n;
  const index = size - 1n;
  // The last leaf of a tree of 2**60 + 5 leaves: siblings are the roots of the
  // 4-leaf subtree and the 2**60-leaf subtree, plus nothing else.
  const sib4 = leafHash(Buffer.from('four'));
  const big = leafHash(Buffer.from('big'));
  const leaf = leafHash(Buffer.from('last'));
  const root = nodeHash(big, nodeHash(sib4, leaf));
  verifyInclusion(leaf, index, size, [sib4, big], root);
  assert.throws(() => verifyInclusion(leaf, index - 1n, size, [sib4, big], root), ProofError);
});
