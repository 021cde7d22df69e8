// RFC 6962 / RFC 9162 Merkle tree hashing and inclusion-proof verification.
//
// Works on leaf *hashes* (32-byte Buffers). Indexes and sizes are BigInt, since
// tree sizes are uint64 on the wire and a Number loses precision past 2**53.
import { createHash } from 'node:crypto';

export const HASH_SIZE = 32;
export const EMPTY_ROOT = createHash('sha256').digest();

/** A Merkle proof, or a hash it is checked against, does not verify. */
export class ProofError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProofError';
  }
}

/** SHA-256(0x00 || data): the 0x00 prefix keeps a leaf from posing as a node. */
export function leafHash(data) {
  return createHash('sha256').update(Buffer.of(0)).update(data).digest();
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left, right) {
  return createHash('sha256').update(Buffer.of(1)).update(left).update(right).digest();
}

function bitLength(n) {
  return n === 0n ? 0 : n.toString(2).length;
}

function bitCount(n) {
  let count = 0;
  for (const digit of n.toString(2)) if (digit === '1') count += 1;
  return count;
}

/** Number of hashes in the inclusion proof of leaf `index` in a tree of `treeSize`. */
export function inclusionPathLength(index, treeSize) {
  // Below the level where the paths to `index` and to the last leaf split,
  // every level contributes a sibling; above it, only the levels where
  // `index` has a left neighbour on the tree's right border do.
  const inner = bitLength(index ^ (treeSize - 1n));
  return inner + bitCount(index >> BigInt(inner));
}

function checkHash(what, value) {
  if (!Buffer.isBuffer(value) || value.length !== HASH_SIZE) {
    const got = Buffer.isBuffer(value) ? `${value.length} bytes` : typeof value;
    throw new ProofError(`${what} must be ${HASH_SIZE} bytes, got ${got}`);
  }
}

/** The root that `path` leads to from leaf `index` (RFC 9162 §2.1.3.2). */
export function rootFromInclusionProof(leaf, index, treeSize, path) {
  checkHash('leaf hash', leaf);
  index = BigInt(index);
  treeSize = BigInt(treeSize);
  if (index < 0n || index >= treeSize) {
    throw new ProofError(`leaf index ${index} is out of range for a tree of size ${treeSize}`);
  }
  const want = inclusionPathLength(index, treeSize);
  if (path.length !== want) {
    throw new ProofError(
      `inclusion path has ${path.length} hashes; a proof for leaf ${index} ` +
        `in a tree of size ${treeSize} has ${want}`,
    );
  }
  path.forEach((p, i) => checkHash(`inclusion path element ${i}`, p));
  let fn = index;
  let sn = treeSize - 1n;
  let r = leaf;
  for (const p of path) {
    if (fn & 1n || fn === sn) {
      r = nodeHash(p, r);
      while (!(fn & 1n) && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofError('inclusion path is too short');
  return r;
}

/** Throw ProofError unless `path` proves leaf `index` is in the tree with `root`. */
export function verifyInclusion(leaf, index, treeSize, path, root) {
  checkHash('root hash', root);
  const computed = rootFromInclusionProof(leaf, index, treeSize, path);
  if (!computed.equals(root)) {
    throw new ProofError(
      `root mismatch: the inclusion path for leaf ${index} leads to ${computed.toString('hex')}, ` +
        `not to the expected root ${root.toString('hex')}`,
    );
  }
}
