// The leaf envelope re-derived in JavaScript matches the Python ledger's
// bytes exactly (the hash below is mrm.tlog.leaf.leaf_bytes' for this record),
// including the strings RFC 8785 escapes and those it leaves alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatTimestamp, leafBytes, recordLeafHash } from '../src/leaf.js';

const RECORD = {
  record_id: '01936b2e-0000-7000-8000-000000000001',
  kind: 'RECORD_KIND_PREDICTION',
  model_name: 'credit-risk',
  model_version: '1.2.4',
  subject: 'a "q" \\ \n\t\u0001 é 😀 \u2028',
  trace_id: '',
  span_id: '',
  body_json: '{"a":1}',
  recorded_at: { seconds: '1732800000', nanos: 123456789 },
  actor: 'anonymous@ipv4:127.0.0.1:5000',
};
const PYTHON_LEAF_HASH = '03031316282dfce7454bb9eb10e00d78fbcfe1dbe59a6d7e10e6170d2a9ee717';

test('leaf bytes and hash agree with the Python implementation', () => {
  const text = leafBytes(RECORD).toString('utf8');
  assert.ok(text.startsWith('{"actor":"anonymous@ipv4:127.0.0.1:5000","body":{"a":1},"kind":"PREDICTION",'));
  assert.ok(text.includes('"subject":"a \\"q\\" \\\\ \\n\\t\\u0001 é 😀 \u2028"'));
  assert.equal(recordLeafHash(RECORD).toString('hex'), PYTHON_LEAF_HASH);
});

test('any changed field changes the leaf', () => {
  for (const [field, value] of [['subject', 'b'], ['model_version', '1.2.5'], ['body_json', '{"a":2}'], ['kind', 'RECORD_KIND_GAP']]) {
    assert.notEqual(recordLeafHash({ ...RECORD, [field]: value }).toString('hex'), PYTHON_LEAF_HASH, field);
  }
  const later = { ...RECORD, recorded_at: { seconds: '1732800000', nanos: 123457000 } };
  assert.notEqual(recordLeafHash(later).toString('hex'), PYTHON_LEAF_HASH);
});

test('timestamps have exactly six fractional digits (nanoseconds truncated)', () => {
  assert.equal(formatTimestamp({ seconds: '0', nanos: 0 }), '1970-01-01T00:00:00.000000Z');
  assert.equal(formatTimestamp({ seconds: '1732800000', nanos: 999 }), '2024-11-28T13:20:00.000000Z');
  assert.equal(formatTimestamp({ seconds: '253402300799', nanos: 999999999 }), '9999-12-31T23:59:59.999999Z');
});
