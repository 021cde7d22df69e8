// Verify an inclusion proof against a signed checkpoint, trusting only the
// log's verifier key: the server's own root hash is never believed.
import { recordLeafHash } from './leaf.js';
import { HASH_SIZE, ProofError, verifyInclusion } from './merkle.js';
import { openCheckpoint } from './note.js';

const HEX = /^[0-9a-f]*$/;

function hashFromHex(value, what) {
  if (typeof value !== 'string' || !HEX.test(value)) throw new ProofError(`${what} must be a lowercase hex string`);
  if (value.length !== 2 * HASH_SIZE) throw new ProofError(`${what} must be ${HASH_SIZE} bytes (${2 * HASH_SIZE} hex digits)`);
  return Buffer.from(value, 'hex');
}

function size(value, what) {
  if (!Number.isSafeInteger(value) && typeof value !== 'string') throw new ProofError(`${what} must be an integer`);
  if (typeof value === 'string' && !/^(0|[1-9][0-9]*)$/.test(value)) throw new ProofError(`${what} must be an integer`);
  const n = BigInt(value);
  if (n < 0n) throw new ProofError(`${what} must not be negative, got ${n}`);
  return n;
}

function checkAgainstCheckpoint(note, vkey, { origin, treeSize, leafHash, leafIndex, path }) {
  if (!note) throw new ProofError('the proof carries no signed checkpoint, so its root cannot be trusted');
  const cp = openCheckpoint(note, vkey);
  if (origin !== undefined && cp.origin !== origin) {
    throw new ProofError(`the proof is for log ${JSON.stringify(origin)} but its checkpoint is for ${JSON.stringify(cp.origin)}`);
  }
  if (cp.size !== treeSize) {
    throw new ProofError(`the proof is for a tree of size ${treeSize} but its checkpoint has size ${cp.size}`);
  }
  verifyInclusion(leafHash, leafIndex, treeSize, path, cp.rootHash);
  return { origin: cp.origin, leafIndex, treeSize, rootHash: cp.rootHash, leafHash };
}

/**
 * Verify a GetInclusionProof response with the log's verifier key.
 *
 * Checks the checkpoint's Ed25519 signature, re-derives the record's leaf
 * hash from its fields (when the response carries the record), and walks the
 * audit path up to the signed root. Throws ProofError or NoteError.
 */
export function verifyInclusionResponse(response, vkey) {
  const leafHash = Buffer.from(response.leaf_hash);
  if (response.record?.record_id) {
    const derived = recordLeafHash(response.record);
    if (!derived.equals(leafHash)) {
      throw new ProofError(
        `record ${response.record.record_id} hashes to ${derived.toString('hex')}, ` +
          `not to the proven leaf ${leafHash.toString('hex')}: the record was altered`,
      );
    }
  }
  return checkAgainstCheckpoint(response.checkpoint?.note, vkey, {
    origin: response.checkpoint?.origin || undefined,
    treeSize: BigInt(response.tree_size),
    leafHash,
    leafIndex: BigInt(response.leaf_index),
    path: response.inclusion_path.map((p) => Buffer.from(p)),
  });
}

/**
 * Verify an inclusion proof file as written by `mrmctl ledger proof ID --output json`:
 * {"origin", "leaf_index", "tree_size", "leaf_hash", "inclusion_path": [hex…], "root_hash", "checkpoint"}.
 */
export function verifyInclusionFile(doc, vkey) {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ProofError('a proof file is a JSON object');
  const allowed = ['origin', 'leaf_index', 'tree_size', 'leaf_hash', 'inclusion_path', 'root_hash', 'checkpoint'];
  const unknown = Object.keys(doc).filter((k) => !allowed.includes(k));
  if (unknown.length) throw new ProofError(`unknown field ${JSON.stringify(unknown.sort()[0])}`);
  for (const key of allowed.slice(0, 6)) {
    if (!(key in doc)) throw new ProofError(`missing field ${JSON.stringify(key)}`);
  }
  if (typeof doc.origin !== 'string' || !doc.origin) throw new ProofError('field "origin" must be a non-empty string');
  if (!Array.isArray(doc.inclusion_path)) throw new ProofError('field "inclusion_path" must be a list of hashes');
  const rootHash = hashFromHex(doc.root_hash, 'field "root_hash"');
  const result = checkAgainstCheckpoint(doc.checkpoint, vkey, {
    origin: doc.origin,
    treeSize: size(doc.tree_size, 'field "tree_size"'),
    leafHash: hashFromHex(doc.leaf_hash, 'field "leaf_hash"'),
    leafIndex: size(doc.leaf_index, 'field "leaf_index"'),
    path: doc.inclusion_path.map((h, i) => hashFromHex(h, `field "inclusion_path"[${i}]`)),
  });
  if (!rootHash.equals(result.rootHash)) {
    throw new ProofError('field "root_hash" differs from the root in the signed checkpoint');
  }
  return result;
}
