#!/usr/bin/env node
// Audit an MRM installation from Node.js.
//
//   node audit.js [RECORD_ID] [--vkey VKEY]       live: checkpoint, models, and
//                                                 (with RECORD_ID) a verified proof
//   node audit.js --proof FILE --vkey VKEY        offline: verify a proof file from
//                                                 `mrmctl ledger proof ID --output json`
//
// Addresses come from MRM_LEDGER_ADDR (default localhost:50052) and
// MRM_REGISTRY_ADDR (default localhost:50051); the log's key from --vkey or
// MRM_LEDGER_VKEY; the credential from MRM_TOKEN or MRM_TOKEN_FILE (an auditor's
// token is enough), TLS from MRM_TLS_CA_FILE (and MRM_TLS_CLIENT_CERT_FILE /
// MRM_TLS_CLIENT_KEY_FILE for mTLS). Exit codes as mrmctl's: 0 verified, 1 a
// check failed, 2 usage or input error, 3 a service is unreachable,
// 4 unauthenticated (no, a wrong, expired or revoked credential), 5 forbidden.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import {
  LedgerClient,
  NoteError,
  ProofError,
  RegistryClient,
  RpcError,
  openCheckpoint,
  parseVerifierKey,
  verifyInclusionFile,
  verifyInclusionResponse,
} from '../src/index.js';

class UsageError extends Error {}

function fail(code, message) {
  console.error(`audit: ${message}`);
  process.exit(code);
}

function readProofFile(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${err.code ?? err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${path} is not JSON`);
  }
}

function offline(file, vkey) {
  if (!vkey) throw new UsageError('--proof needs the log key: --vkey VKEY or MRM_LEDGER_VKEY');
  const result = verifyInclusionFile(readProofFile(file), vkey);
  console.log(`proof verified: leaf ${result.leafIndex} is in the signed tree of size ${result.treeSize} of ${result.origin}`);
}

async function live(recordId, vkey) {
  const ledger = new LedgerClient(process.env.MRM_LEDGER_ADDR || 'localhost:50052');
  const registry = new RegistryClient(process.env.MRM_REGISTRY_ADDR || 'localhost:50051');
  try {
    // refresh: sign a checkpoint covering every leaf, so a new record is provable now.
    const checkpoint = await ledger.getCheckpoint({ refresh: true });
    if (!vkey) {
      vkey = checkpoint.verifier_key;
      console.log(`warning: no --vkey or MRM_LEDGER_VKEY; trusting the key the server sent (${vkey})`);
    }
    const cp = openCheckpoint(checkpoint.note, vkey);
    console.log(`checkpoint: origin=${cp.origin} size=${cp.size} root=${cp.rootHash.toString('hex')} (signature verified)`);

    const models = await registry.listModels();
    console.log(`models: ${models.length}`);
    for (const m of models) {
      const staging = m.staging_versions.length ? ` staging=${m.staging_versions.join(',')}` : '';
      console.log(`model: ${m.name} production=${m.production_version || '-'}${staging}`);
    }

    if (recordId) {
      const proof = await ledger.getInclusionProof(recordId);
      const result = verifyInclusionResponse(proof, vkey);
      console.log(
        `proof verified: record ${recordId} (${proof.record.kind.replace(/^RECORD_KIND_/, '')}) is leaf ` +
          `${result.leafIndex} of the signed tree of size ${result.treeSize}`,
      );
    }
  } finally {
    ledger.close();
    registry.close();
  }
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { vkey: { type: 'string' }, proof: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log('usage: audit.js [RECORD_ID] [--vkey VKEY] | audit.js --proof FILE --vkey VKEY');
    return;
  }
  if (positionals.length > 1) throw new UsageError(`expected at most one RECORD_ID, got ${positionals.length}`);
  const vkey = values.vkey ?? process.env.MRM_LEDGER_VKEY;
  if (vkey) {
    try {
      parseVerifierKey(vkey);
    } catch (err) {
      throw new UsageError(`bad verifier key: ${err.message}`);
    }
  }
  if (values.proof !== undefined) offline(values.proof, vkey);
  else await live(positionals[0], vkey);
}

try {
  await main();
} catch (err) {
  if (err instanceof UsageError) fail(2, err.message);
  if (err instanceof ProofError || err instanceof NoteError) fail(1, `verification failed: ${err.message}`);
  if (err instanceof RpcError) {
    const unreachable = err.code === 'UNAVAILABLE' || err.code === 'DEADLINE_EXCEEDED';
    const codes = { INVALID_ARGUMENT: 2, UNAUTHENTICATED: 4, PERMISSION_DENIED: 5 };
    fail(unreachable ? 3 : codes[err.code] ?? 1, err.message);
  }
  fail(2, err.message); // e.g. an unreadable token or certificate file
}
