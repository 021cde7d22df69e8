// MRM's Node.js client: the ledger and registry over gRPC, and an offline
// verifier (RFC 6962 Merkle proofs, C2SP signed checkpoints with Ed25519).
export {
  DEFAULT_PROTO_DIR,
  LedgerClient,
  RegistryClient,
  RpcError,
  channelCredentialsFromEnv,
  tokenFromEnv,
} from './client.js';
export { formatTimestamp, leafBytes, recordLeafHash } from './leaf.js';
export {
  EMPTY_ROOT,
  HASH_SIZE,
  ProofError,
  inclusionPathLength,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  verifyInclusion,
} from './merkle.js';
export { NoteError, keyId, openCheckpoint, openNote, parseCheckpoint, parseVerifierKey } from './note.js';
export { verifyInclusionFile, verifyInclusionResponse } from './verify.js';
