// C2SP signed notes and checkpoints: a note signed by the Python implementation
// (the ledger's own code) verifies here; any change to it does not.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';

import { NoteError, keyId, openCheckpoint, openNote, parseCheckpoint, parseVerifierKey } from '../src/note.js';

// From mrm.tlog.note with the Ed25519 seed 00 01 02 … 1f (see the test's history).
const VKEY = 'example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4';
const NOTE =
  'example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n' +
  '\u2014 example.com/log 1FXFIQghEbt48JV0nbbvyoj51oOGWi8PWVu51z3js1zWy2qLhh2zcvy6M2X+e8pEVRpGR/9z7MVVru29jIzLkdPuEwg=\n';
const ROOT8 = '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328';

function freshKey(name) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const id = keyId(name, raw);
  const vkey = `${name}+${id.toString('hex')}+${Buffer.concat([Buffer.of(1), raw]).toString('base64')}`;
  const signNote = (text) => `${text}\n\u2014 ${name} ${Buffer.concat([id, sign(null, Buffer.from(text), privateKey)]).toString('base64')}\n`;
  return { vkey, signNote };
}

test('a checkpoint signed by the Python implementation verifies', () => {
  const cp = openCheckpoint(NOTE, VKEY);
  assert.equal(cp.origin, 'example.com/log');
  assert.equal(cp.size, 8n);
  assert.equal(cp.rootHash.toString('hex'), ROOT8);
});

test('the key ID is SHA-256(name || 0x0A || 0x01 || key)[:4]', () => {
  const v = parseVerifierKey(VKEY);
  const raw = Buffer.from(VKEY.split('+').slice(2).join('+'), 'base64'); // base64 may hold '+'
  const want = createHash('sha256').update('example.com/log\n').update(raw).digest().subarray(0, 4);
  assert.deepEqual(v.keyId, want);
});

test('a changed text, signature or key is rejected', () => {
  assert.throws(() => openNote(NOTE.replace('\n8\n', '\n9\n'), parseVerifierKey(VKEY)), /invalid signature by example.com\/log/);
  const sigAt = NOTE.lastIndexOf(' ') + 10;
  const flipped = NOTE.slice(0, sigAt) + (NOTE[sigAt] === 'A' ? 'B' : 'A') + NOTE.slice(sigAt + 1);
  assert.throws(() => openNote(flipped, parseVerifierKey(VKEY)), /invalid signature/);
  const other = freshKey('example.com/log');
  assert.throws(() => openCheckpoint(NOTE, other.vkey), /no signature by a known key; note signed by: example.com\/log\+d455c521/);
});

test('a note signed here with a fresh key verifies, and only with that key', () => {
  const k = freshKey('mrm.example/prod');
  const note = k.signNote(`mrm.example/prod\n3\n${Buffer.alloc(32, 7).toString('base64')}\n`);
  assert.equal(openCheckpoint(note, k.vkey).size, 3n);
  assert.throws(() => openCheckpoint(note, VKEY), NoteError);
});

test('malformed keys and notes name what is wrong', () => {
  assert.throws(() => parseVerifierKey('name+zz+AQ=='), /key ID "zz" is not 8 hex digits/);
  assert.throws(() => parseVerifierKey(VKEY.replace('d455c521', 'd455c522')), /does not match the key/);
  assert.throws(() => parseVerifierKey(VKEY.replace('+AQ', '+Ag')), /unknown algorithm/);
  assert.throws(() => parseVerifierKey('example.com/log+d455c521+not base64'), /not valid base64/);
  assert.throws(() => parseVerifierKey('bad name+d455c521+AQ=='), /contains '\+', a space/);
  assert.throws(() => openNote('no blank line\n', parseVerifierKey(VKEY)), /no blank line/);
  assert.throws(() => openNote('text\n\n- x AAAAAAAA\n', parseVerifierKey(VKEY)), /must start with an em dash/);
  assert.throws(() => openNote('te\x01xt\n\n\u2014 x AAAAAAAA\n', parseVerifierKey(VKEY)), /control character/);
});

test('checkpoint bodies are parsed strictly', () => {
  const root = Buffer.alloc(32).toString('base64');
  assert.equal(parseCheckpoint(`o\n18446744073709551615\n${root}\n`).size, 2n ** 64n - 1n);
  assert.throws(() => parseCheckpoint(`o\n18446744073709551616\n${root}\n`), /does not fit in 64 bits/);
  assert.throws(() => parseCheckpoint(`o\n007\n${root}\n`), /without leading zeroes/);
  assert.throws(() => parseCheckpoint(`o\n7\n${Buffer.alloc(31).toString('base64')}\n`), /31 bytes, not 32/);
  assert.throws(() => parseCheckpoint('o\n7\n'), /needs origin, tree size and root hash/);
  assert.throws(() => parseCheckpoint(`o\n7\n${root}`), /must end with a newline/);
});
