// C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and the
// tlog-checkpoint body they carry (https://c2sp.org/tlog-checkpoint).
//
// The same formats as clients/python/mrm/tlog/note.py and checkpoint.py (and
// Go's golang.org/x/mod/sumdb/note): a verifier key is
// `name+hex(keyid)+base64(0x01 || pubkey)` with
// keyid = SHA-256(name || 0x0A || 0x01 || pubkey)[:4]; a note is its text, a
// blank line, and lines `— name base64(keyid || signature)`.
import { createHash, createPublicKey, verify } from 'node:crypto';

import { HASH_SIZE } from './merkle.js';

const ALG_ED25519 = 0x01;
const MAX_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 '; // EM DASH, space
const HEX8 = /^[0-9a-fA-F]{8}$/;
const CONTROL = /[\x00-\x09\x0b-\x1f]/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const MAX_SIZE = 2n ** 64n - 1n;

/** A signed note or a key is malformed, or its signatures do not verify. */
export class NoteError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NoteError';
  }
}

function checkName(name) {
  if (!name) throw new NoteError('key name is empty');
  if (/[+\s]/u.test(name) || CONTROL.test(name)) {
    throw new NoteError(`key name ${JSON.stringify(name)} contains '+', a space or a control character`);
  }
}

function b64decode(text, what) {
  if (!BASE64.test(text)) throw new NoteError(`${what} is not valid base64`);
  return Buffer.from(text, 'base64');
}

/** SHA-256(name || 0x0A || 0x01 || public key)[:4]. */
export function keyId(name, rawPublicKey) {
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.of(0x0a, ALG_ED25519))
    .update(rawPublicKey)
    .digest()
    .subarray(0, 4);
}

/** Parse `name+hex8+base64(0x01 || key)`, checking the key ID against the key. */
export function parseVerifierKey(vkey) {
  if (typeof vkey !== 'string') throw new NoteError('verifier key must be a string');
  const [name, hex8 = '', b64 = ''] = splitTwice(vkey, '+');
  checkName(name);
  if (!HEX8.test(hex8)) throw new NoteError(`verifier key ID ${JSON.stringify(hex8)} is not 8 hex digits`);
  const raw = b64decode(b64, 'verifier key material');
  if (raw.length === 0 || raw[0] !== ALG_ED25519) {
    throw new NoteError('verifier key uses an unknown algorithm (only Ed25519, 0x01, is supported)');
  }
  if (raw.length !== 33) throw new NoteError(`verifier key Ed25519 key must be 32 bytes, got ${raw.length - 1}`);
  const rawKey = raw.subarray(1);
  const id = Buffer.from(hex8, 'hex');
  if (!keyId(name, rawKey).equals(id)) {
    throw new NoteError(`verifier key ID ${hex8} does not match the key for ${JSON.stringify(name)}`);
  }
  let publicKey;
  try {
    publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: rawKey.toString('base64url') }, format: 'jwk' });
  } catch {
    throw new NoteError(`verifier key for ${JSON.stringify(name)} is not a valid Ed25519 public key`);
  }
  return { name, keyId: id, publicKey };
}

function splitTwice(text, sep) {
  const a = text.indexOf(sep);
  if (a < 0) return [text];
  const b = text.indexOf(sep, a + 1);
  if (b < 0) return [text.slice(0, a), text.slice(a + 1)];
  return [text.slice(0, a), text.slice(a + 1, b), text.slice(b + 1)];
}

function parseNote(note) {
  if (typeof note !== 'string') throw new NoteError('note must be a string');
  if (CONTROL.test(note)) throw new NoteError('note contains a control character other than newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('note has no blank line separating the text from the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith('\n')) throw new NoteError("note's signature block is empty or does not end with a newline");
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) {
    throw new NoteError(`note has ${lines.length} signatures, more than the ${MAX_SIGNATURES} allowed`);
  }
  const sigs = lines.map((line) => {
    if (!line.startsWith(SIG_PREFIX)) {
      throw new NoteError(`malformed signature line ${JSON.stringify(line)}: must start with an em dash`);
    }
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = space < 0 ? rest : rest.slice(0, space);
    const b64 = space < 0 ? '' : rest.slice(space + 1);
    checkName(name);
    const sig = b64 ? b64decode(b64, `signature by ${name}`) : Buffer.alloc(0);
    if (sig.length < 5) throw new NoteError(`signature by ${name} is too short`);
    return { name, keyId: sig.subarray(0, 4), signature: sig.subarray(4) };
  });
  return { text, sigs };
}

/**
 * Verify a signed note with a verifier (from parseVerifierKey) and return its text.
 *
 * Signatures by other keys are ignored; a bad signature by the given key, or
 * none by it at all, rejects the note.
 */
export function openNote(note, verifier) {
  const { text, sigs } = parseNote(note);
  const msg = Buffer.from(text, 'utf8');
  let verified = false;
  const others = [];
  for (const s of sigs) {
    if (s.name !== verifier.name || !s.keyId.equals(verifier.keyId)) {
      others.push(`${s.name}+${s.keyId.toString('hex')}`);
      continue;
    }
    if (s.signature.length !== 64 || !verify(null, msg, verifier.publicKey, s.signature)) {
      throw new NoteError(`invalid signature by ${s.name}`);
    }
    verified = true;
  }
  if (!verified) throw new NoteError(`no signature by a known key; note signed by: ${others.join(', ')}`);
  return text;
}

/** Parse a checkpoint note's text (already verified): origin, size (BigInt), root hash. */
export function parseCheckpoint(text) {
  if (!text.endsWith('\n')) throw new NoteError('checkpoint must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) {
    throw new NoteError(`checkpoint has ${lines.length} lines; it needs origin, tree size and root hash`);
  }
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!origin) throw new NoteError('checkpoint origin line is empty');
  if (!DECIMAL.test(sizeText)) {
    throw new NoteError(`checkpoint tree size ${JSON.stringify(sizeText)} is not a decimal number without leading zeroes`);
  }
  const size = BigInt(sizeText);
  if (size > MAX_SIZE) throw new NoteError(`checkpoint tree size ${size} does not fit in 64 bits`);
  const root = b64decode(rootText, `checkpoint root hash ${JSON.stringify(rootText)}`);
  if (root.length !== HASH_SIZE) throw new NoteError(`checkpoint root hash is ${root.length} bytes, not ${HASH_SIZE}`);
  extensions.forEach((line, i) => {
    if (!line) throw new NoteError(`checkpoint extension line ${i + 1} is empty`);
  });
  return { origin, size, rootHash: root, extensions };
}

/** Verify a signed checkpoint note with the verifier key string and parse it. */
export function openCheckpoint(note, vkey) {
  const verifier = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  return parseCheckpoint(openNote(note, verifier));
}
