/**
 * How stores keep a mapping's proof (PROTOCOL.md §13: store what the proof
 * needs, not repeated text), behind a version byte:
 *
 * - Version 2 (written now): the bytes the base64url text stands for, each
 *   behind its length: the payload's JSON with its attestation (a compact JWS)
 *   cut out as its three decoded parts, then each signature's protected header
 *   and signature. About 950 bytes for a 1,530-byte proof (the keys and
 *   signatures in it are random and cannot shrink), the same as deflate made
 *   of it, for a tenth of deflate's CPU: no zlib stream to set up for every
 *   registration.
 * - Version 1 (rows written before): the proof's JSON deflated (RFC 1951)
 *   with a preset dictionary. Also written when a proof cannot be rebuilt
 *   from its bytes (base64url that does not round-trip, members beyond
 *   `payload`, `signatures`, `protected` and `signature`), so every proof is
 *   kept.
 *
 * Either way the JSON comes back exactly: the proof served is byte for byte
 * the one signed. The holder's public key is not kept beside it when the
 * proof's attestation carries the same one.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decodeJwt } from 'jose';
import type { PublicJwk } from '../protocol/jws.ts';
import { strictBase64url } from '../protocol/strict-json.ts';
import type { Statement } from '../protocol/statement.ts';

/** Version 1: deflate with {@link DICTIONARY}. Never change the dictionary of a version that shipped. */
const V1 = 1;
/** Version 2: the decoded parts, each behind a 16-bit length. */
const V2 = 2;
/** Where the attestation's text starts in a payload's JSON. */
const ATTESTATION = Buffer.from('"attestation":"');
/** The largest proof JSON version 1 keeps (and decodeProof inflates): far above what a registration can make (about 23 KB). */
const MAX_V1_JSON = 65_536;
/** A proof of more signatures than this is not one the DP made (holder, MSP, DP): it is kept as version 1. */
const MAX_SIGNATURES = 8;

/** A proof as registrations make them (synthetic keys): what deflate may refer back to. */
const DICTIONARY = Buffer.from(
  '{"payload":"eyJjc2kiOiJ0ZWw6KzE1NTUwMDAxMTExIiwibXNwIjoibXNwIiwicHJlZmVyZW5jZSI6MSwiY3JlYXRlZCI6IjIwMjYtMTItMDJUMDM6MTQ6NTIuMDAwWiIsImRwIjoi' +
    'ZHAiLCJhdHRlc3RhdGlvbiI6ImV5SmhiR2NpT2lKRlpFUlRRU0lzSW10cFpDSTZJalpaUWtSNFdUUXdXblIyWm5SQ0xWQlJTbFpGUld0UVF5MVpZWEF5WVc5blNXUndPSEJhTUhSbFow' +
    'RWlmUS5leUpqYm1ZaU9uc2lhbmRySWpwN0ltdDBlU0k2SWs5TFVDSXNJbU55ZGlJNklrVmtNalUxTVRraUxDSjRJam9pVlY5TFluVjFVVUpMYVUxdmVGOHRTV0V0TldKU1kxcFhYek5I' +
    'V0hSTldHUTViVzF5Y1ZaWFR6UjNPQ0lzSW10cFpDSTZJaTFhY2toQ09XYzROMjlZVVVwelNXcHpRVmxqTVhGMFJIWTNRekJ0VEZodk5XVTRUVFJ1ZG1oQlpXOGlmWDBzSW14bGRtVnNJ' +
    'am9pYjNSd0lpd2lhWE56SWpvaVkzTnBjQ0lzSW5OMVlpSTZJblJsYkRvck1UVTFOVEF3TURFeE1URWlMQ0pwWVhRaU9qRTNPVFl4T0RFeU9EY3NJbVY0Y0NJNk1UYzVOakU0TkRnNU1u' +
    'MC52WmstSVpsYjFzb2VNU3JwS3NsQWhHZU1FNFRJNFd1TmFEU0JnZWt5WUFuN0tOcnBMVjY4T1FmdW43YTAtdmkwVkdoUmVzTncwVTFTWHRRNWdJLThCdyJ9","signatures":[{"pr' +
    'otected":"eyJhbGciOiJFZERTQSIsImtpZCI6Ii1ackhCOWc4N29YUUpzSWpzQVljMXF0RHY3QzBtTFhvNWU4TTRudmhBZW8iLCJyb2xlIjoiaG9sZGVyIn0","signature":"18ag' +
    'rlZfXcE0CxXQ0kvegvplyiNkS1QyyWQKLC8Gm4aaO1BXlYQyeHKG3TjXya5Yc3lcUClXt3bsj6MCa3LTAw"},{"protected":"eyJhbGciOiJFZERTQSIsImtpZCI6IklrYUZGSW9IS' +
    '2ExLVdFR21qZ2Zic0tYb3ZTRVlsb0RvNC1LZ1lsTElfc1EiLCJyb2xlIjoibXNwIn0","signature":"Tf3oTSlC5InxKz-0HKUKGu_Xa0hKob6daHkwAAK60piQl-nJiFdJdCOeWeO' +
    'h5AF4v0M0Zrq_GISst5dO50hvBQ"},{"protected":"eyJhbGciOiJFZERTQSIsImtpZCI6IkJKWEk3M1FQbVExSmcyYUwxM2N3dzBwQlF2QThtQXlZeDhVY05MTXlFb2ciLCJyb2xl' +
    'IjoiZHAifQ","signature":"i2wC0_aQPeczQBuAE7zjhhMFn__URMPxPs3TxmpVIhv_CTv2CVJ3zCrV-zKLAX7pIZHaLtfk6PeTgsVvCGqkBw"}]}',
);

/** The bytes of base64url text, when they encode back to exactly that text and fit a 16-bit length. */
function canonicalBase64url(text: string): Buffer | undefined {
  const bytes = strictBase64url(text);
  return bytes !== undefined && bytes.length <= 0xffff ? bytes : undefined;
}

/** Version 2's parts of a proof, or undefined when it cannot be rebuilt exactly from them. */
function partsOf(proof: Statement): Buffer[] | undefined {
  if (Object.keys(proof).join() !== 'payload,signatures' || proof.signatures.length > MAX_SIGNATURES) return undefined;
  const payload = canonicalBase64url(proof.payload);
  if (payload === undefined) return undefined;
  // The payload's JSON up to and after its attestation's text, and that text's three parts: the text ends at the first quote.
  const at = payload.indexOf(ATTESTATION);
  const start = at + ATTESTATION.length;
  const end = at < 0 ? -1 : payload.indexOf(0x22, start);
  const jwt = end < 0 ? [] : payload.subarray(start, end).toString('latin1').split('.');
  const attestation = (jwt.length === 3 ? jwt.map(canonicalBase64url) : []).filter((p): p is Buffer => p !== undefined && p.length > 0);
  // Cut out only when all three parts are there: three empty parts mean "not cut out" (see decodeProof).
  const parts =
    attestation.length === 3
      ? [payload.subarray(0, start), ...attestation, payload.subarray(end)]
      : [payload, Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0)];
  for (const signature of proof.signatures) {
    if (Object.keys(signature).join() !== 'protected,signature') return undefined;
    const prot = canonicalBase64url(signature.protected);
    const sig = canonicalBase64url(signature.signature);
    if (prot === undefined || sig === undefined) return undefined;
    parts.push(prot, sig);
  }
  return parts;
}

/** A proof as a column of bytes. */
export function encodeProof(proof: Statement): Buffer {
  const parts = partsOf(proof);
  if (parts === undefined) {
    const json = JSON.stringify(proof);
    // Refused here rather than kept unreadable: decodeProof would not inflate it.
    if (Buffer.byteLength(json) > MAX_V1_JSON) throw new Error(`a proof of ${Buffer.byteLength(json)} bytes: more than a store keeps (${MAX_V1_JSON})`);
    return Buffer.concat([Buffer.from([V1]), deflateRawSync(json, { dictionary: DICTIONARY })]);
  }
  const out = Buffer.allocUnsafe(2 + parts.reduce((n, p) => n + 2 + p.length, 0));
  out[0] = V2;
  out[1] = (parts.length - 5) / 2;
  let offset = 2;
  for (const part of parts) {
    out.writeUInt16BE(part.length, offset);
    offset += 2 + part.copy(out, offset + 2);
  }
  return out;
}

/** Version 2's parts, each a view of `bytes`; throws on a damaged row (a length past the end, bytes left over). */
function readParts(bytes: Buffer): Buffer[] {
  const count = 5 + 2 * (bytes[1] ?? 0);
  const parts: Buffer[] = [];
  let offset = 2;
  for (let i = 0; i < count; i += 1) {
    if (offset + 2 > bytes.length) throw new Error('a stored proof cut short');
    const length = bytes.readUInt16BE(offset);
    if (offset + 2 + length > bytes.length) throw new Error('a stored proof cut short');
    parts.push(bytes.subarray(offset + 2, offset + 2 + length));
    offset += 2 + length;
  }
  if (offset !== bytes.length) throw new Error('a stored proof with bytes after its end');
  return parts;
}

/** The proof of a column: bytes from {@link encodeProof}, or the JSON text older rows hold. */
export function decodeProof(stored: Buffer | Uint8Array | string): Statement {
  if (typeof stored === 'string') return JSON.parse(stored) as Statement;
  const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  if (bytes[0] === V2) {
    const [before, header, claims, sig, after, ...signatures] = readParts(bytes) as [Buffer, Buffer, Buffer, Buffer, Buffer, ...Buffer[]];
    const payload =
      header.length === 0 && claims.length === 0 && sig.length === 0
        ? before
        : Buffer.concat([before, Buffer.from(`${header.toString('base64url')}.${claims.toString('base64url')}.${sig.toString('base64url')}`), after]);
    const list: Statement['signatures'] = [];
    for (let i = 0; i < signatures.length; i += 2) {
      list.push({ protected: (signatures[i] as Buffer).toString('base64url'), signature: (signatures[i + 1] as Buffer).toString('base64url') });
    }
    return { payload: payload.toString('base64url'), signatures: list };
  }
  if (bytes[0] !== V1) throw new Error(`a stored proof of unknown encoding ${String(bytes[0])}`);
  // A stored proof is far smaller than 64 KiB: a larger output is a damaged row, not a reason to use memory.
  return JSON.parse(inflateRawSync(bytes.subarray(1), { dictionary: DICTIONARY, maxOutputLength: MAX_V1_JSON }).toString('utf8')) as Statement;
}

/** The holder key the proof's attestation confirms (`cnf.jwk`), if it can be read. */
export function attestedHolderJwk(proof: Statement): PublicJwk | undefined {
  try {
    const payload = JSON.parse(Buffer.from(proof.payload, 'base64url').toString('utf8')) as { attestation?: unknown };
    if (typeof payload.attestation !== 'string') return undefined;
    const claims = decodeJwt(payload.attestation) as { cnf?: { jwk?: PublicJwk } };
    return claims.cnf?.jwk;
  } catch {
    return undefined;
  }
}

/** The holder key column: empty when the proof's attestation carries the same key (it is read from there). */
export function holderJwkColumn(holderJwk: PublicJwk, proof: Statement): string {
  const attested = attestedHolderJwk(proof);
  return attested !== undefined && JSON.stringify(attested) === JSON.stringify(holderJwk) ? '' : JSON.stringify(holderJwk);
}

/** The holder key of a row: its column, or the proof's attestation's when the column is empty. */
export function holderJwkOf(column: string, proof: Statement): PublicJwk {
  if (column !== '') return JSON.parse(column) as PublicJwk;
  const attested = attestedHolderJwk(proof);
  if (attested === undefined) throw new Error('a stored mapping without its holder key');
  return attested;
}
