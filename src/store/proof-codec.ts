/**
 * How stores keep a mapping's proof (PROTOCOL.md §13: store what the proof
 * needs, not repeated text): the proof's JSON, deflated (RFC 1951) with a
 * preset dictionary (a sample proof of the same shape: its protected headers,
 * the base64url of the payload's and the attestation's fixed JSON), behind a
 * version byte. About 940 bytes for a 1,530-byte proof (the keys and
 * signatures in it are random and cannot shrink). The JSON is kept exactly:
 * the proof served is byte for byte the one signed. The holder's public key is
 * not kept beside it when the proof's attestation carries the same one.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decodeJwt } from 'jose';
import type { PublicJwk } from '../protocol/jws.ts';
import type { Statement } from '../protocol/statement.ts';

/** Version 1: deflate with {@link DICTIONARY}. Never change the dictionary of a version that shipped. */
const V1 = 1;

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

/** A proof as a column of bytes. */
export function encodeProof(proof: Statement): Buffer {
  const deflated = deflateRawSync(JSON.stringify(proof), { dictionary: DICTIONARY });
  return Buffer.concat([Buffer.from([V1]), deflated]);
}

/** The proof of a column: bytes from {@link encodeProof}, or the JSON text older rows hold. */
export function decodeProof(stored: Buffer | Uint8Array | string): Statement {
  if (typeof stored === 'string') return JSON.parse(stored) as Statement;
  const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  if (bytes[0] !== V1) throw new Error(`a stored proof of unknown encoding ${String(bytes[0])}`);
  // A stored proof is far smaller than 64 KiB: a larger output is a damaged row, not a reason to use memory.
  return JSON.parse(inflateRawSync(bytes.subarray(1), { dictionary: DICTIONARY, maxOutputLength: 65_536 }).toString('utf8')) as Statement;
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
