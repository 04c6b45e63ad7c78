/**
 * The Privacy Pass issuer role (RFC 9578 token type 0x0002, RFC 9576's
 * attesters, PROTOCOL.md §14): `GET /.well-known/private-token-issuer-directory`
 * publishes its token key, `POST /token-request` blind-signs a
 * `TokenRequest` for an attester it knows, an MSP authenticated by API key
 * (`Authorization: Bearer`) or client certificate, within that MSP's quota
 * of tokens per UTC day. The issuer sees the MSP and a blinded message, never
 * the user, the gateway's challenge or the token; it logs no body.
 */
import { constants, createHash, KeyObject, privateDecrypt, publicEncrypt, type webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publicVerif, TOKEN_TYPES } from '@cloudflare/privacypass-ts';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { MimiError } from '../errors.ts';
import { clientCertificateHash } from '../server/client-identity.ts';
import { refuseOtherMethods } from '../server/http-common.ts';
import {
  ISSUER_DIRECTORY_CONTENT_TYPE,
  ISSUER_DIRECTORY_PATH,
  publishTokenKey,
  TOKEN_REQUEST_CONTENT_TYPE,
  TOKEN_REQUEST_LENGTH,
  TOKEN_REQUEST_PATH,
  TOKEN_RESPONSE_CONTENT_TYPE,
  TOKEN_RSA_PARAMS,
  TOKEN_TYPE_BLIND_RSA,
  type TokenKey,
} from './tokens.ts';

export { ISSUER_DIRECTORY_CONTENT_TYPE, ISSUER_DIRECTORY_PATH, TOKEN_REQUEST_CONTENT_TYPE, TOKEN_REQUEST_PATH, TOKEN_RESPONSE_CONTENT_TYPE };

/** The issuer's key file in the process's key directory. */
export const ISSUER_KEY_FILE = 'issuer-token-key.jwk';
/** The key a rotation replaced, accepted until the operator deletes it (or the next rotation replaces it). */
export const ISSUER_PREVIOUS_KEY_FILE = 'issuer-token-key.previous.jwk';
/** Largest key file read. */
const MAX_KEY_FILE = 16 * 1024;
const DAY_MS = 86_400_000;

/** How an issuer is built. */
export interface IssuerOptions {
  /** The signing key pair (RSA-PSS SHA-384, 2048 bits): {@link loadOrCreateIssuerKey}. */
  readonly keyPair: CryptoKeyPair;
  /** The key pair a rotation replaced ({@link loadIssuerKeys}): listed after the current one and still signed with. */
  readonly previousKeyPair?: CryptoKeyPair | undefined;
  /** Attesters by the SHA-256 hex of their API key, and of their certificate's SubjectPublicKeyInfo: their MSP. */
  readonly keys: ReadonlyMap<string, string>;
  readonly certs: ReadonlyMap<string, string>;
  /** Tokens per MSP per UTC day. */
  readonly quotas: ReadonlyMap<string, number>;
  readonly logger: Logger;
  /** The clock (ms): the quotas' day. */
  readonly now: () => number;
  /** Told each token request's outcome, by attester (metrics). */
  readonly observe?: ((attester: string, result: IssuerResult) => void) | undefined;
}

/** A token request's outcome: the attester unknown, the request malformed, the quota spent, or a token issued. */
export type IssuerResult = 'issued' | 'unauthorized' | 'invalid' | 'quota';

/** A built issuer: its routes and its published key. */
export interface TokenIssuer {
  /** The key it signs new tokens with. */
  readonly tokenKey: TokenKey;
  /** Every key it publishes and signs with: the current one first, then the previous one. */
  readonly tokenKeys: readonly TokenKey[];
  routes(app: FastifyInstance): void;
}

/** Reads a private RSA JWK key file (0600, 2048 bits); undefined when there is none. */
async function readIssuerKey(path: string): Promise<CryptoKeyPair | undefined> {
  let text: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) throw new MimiError('start_refused', `${path}: a secret must not be readable by others (chmod 600)`);
    if (info.size > MAX_KEY_FILE) throw new MimiError('start_refused', `${path}: larger than ${MAX_KEY_FILE} bytes`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MimiError('start_refused', `${path}: cannot be read`, { cause: err });
  }
  try {
    const jwk = JSON.parse(text) as webcrypto.JsonWebKey;
    if (jwk.kty !== 'RSA' || jwk.n === undefined || jwk.e === undefined || jwk.d === undefined) throw new Error('not a private RSA JWK');
    const privateKey = await crypto.subtle.importKey('jwk', jwk, TOKEN_RSA_PARAMS, true, ['sign']);
    const publicKey = await crypto.subtle.importKey('jwk', { kty: 'RSA', n: jwk.n, e: jwk.e }, TOKEN_RSA_PARAMS, true, ['verify']);
    if ((publicKey.algorithm as webcrypto.RsaHashedKeyAlgorithm).modulusLength !== 2048) throw new Error('not 2048 bits');
    return { privateKey, publicKey };
  } catch (err) {
    throw new MimiError('start_refused', `${path}: not a private 2048-bit RSA JWK`, { cause: err });
  }
}

async function writeIssuerKey(path: string, pair: CryptoKeyPair, flag: 'wx' | 'w'): Promise<void> {
  await writeFile(path, `${JSON.stringify(await crypto.subtle.exportKey('jwk', pair.privateKey))}\n`, { mode: 0o600, flag });
}

/** Reads the issuer's private RSA JWK from `DIR/issuer-token-key.jwk`, creating it (0600) when missing. */
export async function loadOrCreateIssuerKey(dir: string): Promise<CryptoKeyPair> {
  const path = join(dir, ISSUER_KEY_FILE);
  const held = await readIssuerKey(path);
  if (held !== undefined) return held;
  const pair = await generateIssuerKey();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeIssuerKey(path, pair, 'wx');
  return pair;
}

/**
 * The issuer's keys in `DIR`: the current one (created when missing) and the
 * previous one, `issuer-token-key.previous.jwk`, when a rotation left it
 * there: still listed in the directory and still signed with, so that tokens
 * asked for and held under it keep working until the operator removes it.
 */
export async function loadIssuerKeys(dir: string): Promise<{ current: CryptoKeyPair; previous: CryptoKeyPair | undefined }> {
  return { current: await loadOrCreateIssuerKey(dir), previous: await readIssuerKey(join(dir, ISSUER_PREVIOUS_KEY_FILE)) };
}

/**
 * `mimi key rotate --issuer`: a new current key in `DIR`; the current one
 * becomes the previous one (the one before it is deleted). Their truncated
 * key ids (the last byte of the key id, RFC 9578 §6.1) differ, so a token
 * request names one of them. Takes effect when the issuer starts again.
 */
export async function rotateIssuerKey(dir: string): Promise<{ current: TokenKey; previous: TokenKey }> {
  const old = await readIssuerKey(join(dir, ISSUER_KEY_FILE));
  if (old === undefined)
    throw new MimiError('invalid_config', `${join(dir, ISSUER_KEY_FILE)}: no issuer key to rotate (an issuer creates it at its first start)`);
  const previous = await publishTokenKey(old.publicKey);
  let fresh: CryptoKeyPair;
  let current: TokenKey;
  do {
    fresh = await generateIssuerKey();
    current = await publishTokenKey(fresh.publicKey);
  } while (current.id[current.id.length - 1] === previous.id[previous.id.length - 1]);
  const pending = join(dir, `${ISSUER_KEY_FILE}.new`);
  await writeIssuerKey(pending, fresh, 'w');
  await rename(join(dir, ISSUER_KEY_FILE), join(dir, ISSUER_PREVIOUS_KEY_FILE));
  await rename(pending, join(dir, ISSUER_KEY_FILE));
  return { current, previous };
}

/** A new issuer key pair (RFC 9578 §6: 2048-bit RSA, e = 65537). */
export function generateIssuerKey(): Promise<CryptoKeyPair> {
  return publicVerif.Issuer.generateKey(publicVerif.BlindRSAMode.PSS, { modulusLength: 2048, publicExponent: Uint8Array.from([1, 0, 1]) });
}

function sha256Hex(data: string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The MSP behind a request: its API key, else its verified client certificate; anyone else is refused. */
function attesterOf(request: Parameters<typeof clientCertificateHash>[0], options: IssuerOptions): string {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (match === null) throw new MimiError('unauthorized', 'Authorization must be "Bearer <API key>"');
    const msp = options.keys.get(sha256Hex(match[1] ?? ''));
    if (msp === undefined) throw new MimiError('unauthorized', 'unknown API key');
    return msp;
  }
  const cert = clientCertificateHash(request);
  const msp = cert !== undefined ? options.certs.get(cert) : undefined;
  if (msp === undefined) throw new MimiError('unauthorized', 'token requests come from attesters: give an API key or a known client certificate');
  return msp;
}

/** One key the issuer signs with: RFC 9474 BlindSign on OpenSSL. */
interface SigningTokenKey {
  readonly published: TokenKey;
  readonly truncatedId: number;
  readonly sign: (blinded: Buffer) => Buffer;
}

async function signingKeyOf(pair: CryptoKeyPair): Promise<SigningTokenKey> {
  const published = await publishTokenKey(pair.publicKey);
  // RFC 9474 BlindSign is RSASP1 on the blinded message, then a check that it verifies (RSAVP1). OpenSSL does the
  // private operation (with CRT) in about a millisecond; the library's pure-JavaScript one held the event loop for
  // about 0.4 s per token, so one attester within its quota could stall the issuer for everyone.
  const privateKey = KeyObject.from(pair.privateKey);
  const publicKey = KeyObject.from(pair.publicKey);
  const modulus = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
  return {
    published,
    truncatedId: published.id[published.id.length - 1] as number,
    sign: (blinded) => {
      if (blinded.length !== modulus.length || Buffer.compare(blinded, modulus) >= 0) throw new Error('the blinded message is not below the modulus');
      const signature = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, blinded);
      // RFC 9474 §4.3 step 3: verify before answering (a fault must not leak the key).
      if (!publicEncrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature).equals(blinded)) throw new Error('the signature does not verify');
      return signature;
    },
  };
}

/** Builds an issuer over its keys. */
export async function buildIssuer(options: IssuerOptions): Promise<TokenIssuer> {
  const current = await signingKeyOf(options.keyPair);
  const previous = options.previousKeyPair !== undefined ? await signingKeyOf(options.previousKeyPair) : undefined;
  if (previous !== undefined && previous.truncatedId === current.truncatedId && !Buffer.from(previous.published.id).equals(current.published.id))
    throw new MimiError('start_refused', 'the current and previous issuer keys share a truncated key id: rotate again');
  const signing = previous === undefined || Buffer.from(previous.published.id).equals(current.published.id) ? [current] : [current, previous];
  // RFC 9578 §4: the current key first; clients and gateways take the first they support.
  const directory = JSON.stringify({
    'issuer-request-uri': TOKEN_REQUEST_PATH,
    'token-keys': signing.map((k) => ({ 'token-type': TOKEN_TYPE_BLIND_RSA, 'token-key': Buffer.from(k.published.spki).toString('base64url') })),
  });
  const observe = options.observe ?? ((): void => undefined);
  /** Tokens issued today, per MSP. */
  const issued = new Map<string, { day: number; count: number }>();

  /** PROTOCOL.md §14 `issuer.quotas`: one more token for `msp` today, or 429 until the next 00:00 UTC. */
  const charge = (msp: string): void => {
    const now = options.now();
    const day = Math.floor(now / DAY_MS);
    const quota = options.quotas.get(msp) ?? 0;
    let entry = issued.get(msp);
    if (entry === undefined || entry.day !== day) {
      entry = { day, count: 0 };
      issued.set(msp, entry);
    }
    if (entry.count >= quota)
      throw new MimiError('rate_limited', `the daily token quota of ${msp} is spent`, {
        retryAfter: Math.max(1, Math.ceil(((day + 1) * DAY_MS - now) / 1000)),
      });
    entry.count += 1;
  };

  return {
    tokenKey: current.published,
    tokenKeys: signing.map((k) => k.published),
    routes: (app) => {
      app.addContentTypeParser(TOKEN_REQUEST_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: TOKEN_REQUEST_LENGTH }, (_request, body, done) => done(null, body));
      app.get(ISSUER_DIRECTORY_PATH, async (_request, reply) =>
        reply.type(ISSUER_DIRECTORY_CONTENT_TYPE).header('cache-control', 'max-age=300').send(directory),
      );
      refuseOtherMethods(app, ISSUER_DIRECTORY_PATH, ['GET']);
      app.post(TOKEN_REQUEST_PATH, async (request, reply) => {
        let msp = 'unknown';
        try {
          msp = attesterOf(request.raw, options);
        } catch (err) {
          observe(msp, 'unauthorized');
          throw err;
        }
        const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        const body = request.body;
        const refused = (message: string, status?: number): MimiError => {
          observe(msp, 'invalid');
          return new MimiError('invalid_request', message, status !== undefined ? { status } : {});
        };
        if (type !== TOKEN_REQUEST_CONTENT_TYPE || !Buffer.isBuffer(body))
          throw refused(`the body of ${TOKEN_REQUEST_PATH} must be ${TOKEN_REQUEST_CONTENT_TYPE}`, 415);
        // RFC 9578 §6.2: exactly token_type (2), truncated_token_key_id, blinded_msg[Nk].
        if (body.length !== TOKEN_REQUEST_LENGTH || body.readUInt16BE(0) !== TOKEN_TYPE_BLIND_RSA)
          throw refused(`a token request is ${TOKEN_REQUEST_LENGTH} bytes of token type 2`);
        const key = signing.find((k) => k.truncatedId === body[2]);
        if (key === undefined) throw refused('the token request names a token key this issuer does not hold: fetch its directory again');
        try {
          charge(msp);
        } catch (err) {
          observe(msp, 'quota');
          throw err;
        }
        let signature: Uint8Array;
        try {
          const tokenRequest = publicVerif.TokenRequest.deserialize(TOKEN_TYPES.BLIND_RSA, new Uint8Array(body));
          signature = new publicVerif.TokenResponse(key.sign(Buffer.from(tokenRequest.blindedMsg))).serialize();
        } catch (err) {
          // A blinded message out of range (RFC 9474 §4.2): the client's fault, not the issuer's.
          observe(msp, 'invalid');
          throw new MimiError('invalid_request', 'the blinded message cannot be signed', { cause: err });
        }
        observe(msp, 'issued');
        options.logger.debug({ msp }, 'token issued');
        return reply.type(TOKEN_RESPONSE_CONTENT_TYPE).header('cache-control', 'no-store').send(Buffer.from(signature));
      });
      refuseOtherMethods(app, TOKEN_REQUEST_PATH, ['POST']);
    },
  };
}
