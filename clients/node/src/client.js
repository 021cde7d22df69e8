// gRPC clients for the ledger and the registry, loaded from proto/ at run time.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The repository's proto/ folder; override with MRM_PROTO_DIR or the protoDir option. */
export const DEFAULT_PROTO_DIR = fileURLToPath(new URL('../../../proto', import.meta.url));

// Field names as in the .proto (snake_case), uint64 as decimal strings (tree
// sizes may exceed 2**53), enums by name, bytes as Buffers, and every field
// present (proto3 defaults) so that leaf bytes can be re-derived.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

const cache = new Map();

function loadPackage(protoDir) {
  let pkg = cache.get(protoDir);
  if (!pkg) {
    const definition = protoLoader.loadSync(['mrm/v1/ledger.proto', 'mrm/v1/registry.proto'], {
      ...LOADER_OPTIONS,
      includeDirs: [protoDir],
    });
    pkg = grpc.loadPackageDefinition(definition).mrm.v1;
    cache.set(protoDir, pkg);
  }
  return pkg;
}

/** A failed call, with the gRPC status code name (e.g. "UNAVAILABLE") and details. */
export class RpcError extends Error {
  constructor(method, err) {
    const code = grpc.status[err.code] ?? String(err.code);
    super(`${method}: ${code}: ${err.details || err.message}`);
    this.name = 'RpcError';
    this.code = code;
    this.details = err.details;
  }
}

/**
 * The bearer token to send, as mrmctl finds it: the `token` option, else
 * MRM_TOKEN, else the file MRM_TOKEN_FILE names. Empty: send none.
 */
export function tokenFromEnv(env = process.env) {
  if (env.MRM_TOKEN) return env.MRM_TOKEN.trim();
  if (env.MRM_TOKEN_FILE) {
    try {
      return readFileSync(env.MRM_TOKEN_FILE, 'utf8').trim();
    } catch (err) {
      throw new Error(`cannot read the token file MRM_TOKEN_FILE=${env.MRM_TOKEN_FILE}: ${err.code ?? err.message}`);
    }
  }
  return '';
}

/**
 * Channel credentials from MRM_TLS_CA_FILE (and, for mTLS, MRM_TLS_CLIENT_CERT_FILE
 * and MRM_TLS_CLIENT_KEY_FILE); plaintext when no CA is set.
 */
export function channelCredentialsFromEnv(env = process.env) {
  if (!env.MRM_TLS_CA_FILE) return grpc.credentials.createInsecure();
  const read = (name) => (env[name] ? readFileSync(env[name]) : null);
  return grpc.credentials.createSsl(
    read('MRM_TLS_CA_FILE'),
    read('MRM_TLS_CLIENT_KEY_FILE'),
    read('MRM_TLS_CLIENT_CERT_FILE'),
  );
}

class ServiceClient {
  constructor(serviceName, target, { protoDir, timeoutMs = 30_000, credentials, token } = {}) {
    const dir = protoDir ?? process.env.MRM_PROTO_DIR ?? DEFAULT_PROTO_DIR;
    const Service = loadPackage(dir)[serviceName];
    this.stub = new Service(target, credentials ?? channelCredentialsFromEnv());
    this.timeoutMs = timeoutMs;
    // The token travels as call metadata; it is never part of an error message.
    this.metadata = new grpc.Metadata();
    const bearer = token ?? tokenFromEnv();
    if (bearer) this.metadata.set('authorization', `Bearer ${bearer}`);
  }

  call(method, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.timeoutMs);
      this.stub[method](request, this.metadata, { deadline }, (err, response) => {
        if (err) reject(new RpcError(method, err));
        else resolve(response);
      });
    });
  }

  close() {
    this.stub.close();
  }
}

/** mrm.v1.LedgerService. */
export class LedgerClient extends ServiceClient {
  constructor(target, options) {
    super('LedgerService', target, options);
  }

  /** The latest signed checkpoint; with refresh, sign one covering every leaf first. */
  async getCheckpoint({ refresh = false } = {}) {
    return (await this.call('GetCheckpoint', { refresh })).checkpoint;
  }

  async getRecord(recordId) {
    return (await this.call('GetRecord', { record_id: recordId })).record;
  }

  /** The inclusion proof of a record (by id) against the latest signed checkpoint. */
  async getInclusionProof(recordId, { treeSize = 0 } = {}) {
    return this.call('GetInclusionProof', { record_id: recordId, tree_size: String(treeSize) });
  }
}

/** mrm.v1.RegistryService. */
export class RegistryClient extends ServiceClient {
  constructor(target, options) {
    super('RegistryService', target, options);
  }

  /** Every model, following the pages. */
  async listModels({ pageSize = 100 } = {}) {
    const models = [];
    let pageToken = '';
    do {
      const page = await this.call('ListModels', { page_size: pageSize, page_token: pageToken });
      models.push(...page.models);
      pageToken = page.next_page_token;
    } while (pageToken);
    return models;
  }
}
