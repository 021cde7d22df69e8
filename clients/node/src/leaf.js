// The leaf bytes of an audit record: one RFC 8785 canonical JSON object.
//
// Keys in canonical (sorted) order: actor, body, kind, model_name,
// model_version, record_id, recorded_at, span_id, subject, trace_id, v. Every
// key is always present, an absent string is "", and `body` is the record's
// `body_json` exactly as the ledger returned it (already canonical): a body
// altered in any way, even only reformatted, no longer hashes to its leaf.
// JSON.stringify escapes strings exactly as RFC 8785 does (RFC 8785 takes its
// string rules from ECMAScript).
import { leafHash } from './merkle.js';

const LEAF_FORMAT_VERSION = 1;

/** RFC 3339 UTC with exactly six fractional digits, from a protobuf Timestamp. */
export function formatTimestamp(ts) {
  const seconds = BigInt(ts?.seconds ?? 0);
  const micros = Math.floor(Number(ts?.nanos ?? 0) / 1000);
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}.${String(micros).padStart(6, '0')}Z`;
}

/** The leaf spelling of a RecordKind: "RECORD_KIND_PREDICTION" -> "PREDICTION". */
export function kindName(kind) {
  if (typeof kind !== 'string') throw new TypeError('load the protos with enums: String');
  return kind.replace(/^RECORD_KIND_/, '');
}

/** Re-derive a stored record's leaf bytes from the fields the ledger returned. */
export function leafBytes(record) {
  const s = (value) => JSON.stringify(value ?? '');
  const text =
    `{"actor":${s(record.actor)},"body":${record.body_json},"kind":${s(kindName(record.kind))},` +
    `"model_name":${s(record.model_name)},"model_version":${s(record.model_version)},` +
    `"record_id":${s(record.record_id)},"recorded_at":"${formatTimestamp(record.recorded_at)}",` +
    `"span_id":${s(record.span_id)},"subject":${s(record.subject)},` +
    `"trace_id":${s(record.trace_id)},"v":${LEAF_FORMAT_VERSION}}`;
  return Buffer.from(text, 'utf8');
}

/** SHA-256(0x00 || leaf bytes) of a stored record. */
export function recordLeafHash(record) {
  return leafHash(leafBytes(record));
}
