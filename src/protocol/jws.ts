/**
 * JOSE signatures (PROTOCOL.md §8): EdDSA over Ed25519, keys as JWKs whose `kid`
 * is the RFC 7638 thumbprint, flattened JWS for signed documents. All of it is
 * jose's; this file only fixes the choices and turns failures into `bogus`.
 * Pure: no I/O, and the clock (`iat`) is passed in.
 */
import { calculateJwkThumbprint, exportJWK, flattenedVerify, FlattenedSign, generateKeyPair, importJWK, type FlattenedJWS, type JWK } from 'jose';
import { KeyObject, sign, type webcrypto } from 'node:crypto';
import { z } from 'zod';
import { MimiError } from '../errors.ts';

type CryptoKey = webcrypto.CryptoKey;

/** A public Ed25519 JWK as zone files, registries and referrals carry it. */
export const publicJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'x is 32 octets in base64url'),
  kid: z.string().max(128).optional(),
  alg: z.enum(['EdDSA', 'Ed25519']).optional(),
  use: z.literal('sig').optional(),
});
/** A public Ed25519 JWK. */
export type PublicJwk = z.infer<typeof publicJwkSchema>;

/** A flattened JWS as received or sent (RFC 7515 §7.2.2). */
export const flattenedJwsSchema = z.strictObject({
  protected: z.string().max(4096),
  payload: z.string().max(4 * 1024 * 1024),
  signature: z.string().max(512),
  header: z.record(z.string(), z.unknown()).optional(),
});

/** The media type of signed documents. */
export const JOSE_CONTENT_TYPE = 'application/jose+json';

/** Imports an Ed25519 JWK (OKP keys always import as a CryptoKey; an octet key would be bytes). */
async function importEd25519(jwk: Parameters<typeof importJWK>[0]): Promise<CryptoKey> {
  const key = await importJWK(jwk, 'EdDSA');
  if (key instanceof Uint8Array) throw new MimiError('bad_signature', 'not an Ed25519 key');
  return key;
}

/** A signing key: the private key, and its public JWK with `kid` = thumbprint. */
export interface SigningKey {
  readonly kid: string;
  readonly publicJwk: PublicJwk;
  readonly privateJwk: JWK;
  readonly key: CryptoKey;
}

/** The RFC 7638 thumbprint of a public JWK. */
export function thumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'sha256');
}

/** Generates a new Ed25519 signing key. */
export async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return signingKeyFromJwk(await exportJWK(privateKey));
}

/** A signing key from a private JWK (as stored in a key file); throws if it is not Ed25519 with `d`. */
export async function signingKeyFromJwk(jwk: JWK): Promise<SigningKey> {
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || typeof jwk.d !== 'string') {
    throw new MimiError('invalid_config', 'a signing key must be a private Ed25519 JWK (kty OKP, crv Ed25519, x and d)');
  }
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  const kid = await thumbprint(publicJwk);
  const key = await importEd25519({ kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d });
  return { kid, publicJwk: { ...publicJwk, kid }, privateJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d, kid }, key };
}

const keyObjects = new WeakMap<CryptoKey, KeyObject>();

/**
 * The Ed25519 signature (RFC 8032) of `input` by `key`, made on libuv's thread
 * pool. What jose's FlattenedSign does for EdDSA, through node:crypto rather
 * than WebCrypto: a third of the main thread's time for each signature (8 to
 * 10 µs against 28 to 32 µs, 500 at once, Node 20), which a DP countersigning
 * every statement of a bulk import spends on its one event loop.
 */
export function signEd25519(key: SigningKey, input: Uint8Array): Promise<Buffer> {
  let keyObject = keyObjects.get(key.key);
  if (keyObject === undefined) {
    keyObject = KeyObject.from(key.key);
    keyObjects.set(key.key, keyObject);
  }
  const signer = keyObject;
  return new Promise((resolve, reject) => sign(null, input, signer, (err, signature) => (err === null ? resolve(signature) : reject(err))));
}

/** Signs a JSON payload as a flattened JWS with `{ alg: EdDSA, kid }`. */
export function signFlattened(payload: unknown, key: SigningKey, extraHeader: Record<string, string> = {}): Promise<FlattenedJWS> {
  return new FlattenedSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, ...extraHeader }).sign(key.key);
}

const importedKeys = new Map<string, CryptoKey>();

/** The imported (and cached) verification key of a public JWK. */
export async function publicCryptoKey(jwk: PublicJwk): Promise<CryptoKey> {
  let key = importedKeys.get(jwk.x);
  if (key === undefined) {
    key = await importEd25519({ kty: 'OKP', crv: 'Ed25519', x: jwk.x });
    if (importedKeys.size > 10_000) importedKeys.clear();
    importedKeys.set(jwk.x, key);
  }
  return key;
}

/**
 * Verifies a flattened JWS with a public JWK and returns its JSON payload;
 * any failure (shape, algorithm, signature, JSON) is `bogus`.
 */
export async function verifyFlattened(jws: unknown, jwk: PublicJwk, what: string): Promise<unknown> {
  const parsed = flattenedJwsSchema.safeParse(jws);
  if (!parsed.success) throw new MimiError('bogus', `${what}: not a flattened JWS`);
  try {
    const { protected: prot, payload: body, signature } = parsed.data;
    const { payload } = await flattenedVerify({ protected: prot, payload: body, signature }, await publicCryptoKey(jwk), { algorithms: ['EdDSA', 'Ed25519'] });
    return JSON.parse(new TextDecoder().decode(payload)) as unknown;
  } catch (err) {
    throw new MimiError('bogus', `${what}: signature does not verify`, { cause: err });
  }
}

/** Reads a flattened JWS's payload without verifying it (for an insecure chain). */
export function unverifiedPayload(jws: unknown, what: string): unknown {
  const parsed = flattenedJwsSchema.safeParse(jws);
  if (!parsed.success) throw new MimiError('bogus', `${what}: not a flattened JWS`);
  try {
    return JSON.parse(Buffer.from(parsed.data.payload, 'base64url').toString('utf8')) as unknown;
  } catch (err) {
    throw new MimiError('bogus', `${what}: the payload is not JSON`, { cause: err });
  }
}
