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
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
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
/** Largest key file read. */
const MAX_KEY_FILE = 16 * 1024;
const DAY_MS = 86_400_000;

/** How an issuer is built. */
export interface IssuerOptions {
  /** The signing key pair (RSA-PSS SHA-384, 2048 bits): {@link loadOrCreateIssuerKey}. */
  readonly keyPair: CryptoKeyPair;
  /** Attesters by the SHA-256 hex of their API key, and of their certificate's SubjectPublicKeyInfo: their MSP. */
  readonly keys: ReadonlyMap<string, string>;
  readonly certs: ReadonlyMap<string, string>;
  /** Tokens per MSP per UTC day. */
  readonly quotas: ReadonlyMap<string, number>;
  readonly logger: Logger;
  /** The clock (ms): the quotas' day. */
  readonly now: () => number;
}

/** A built issuer: its routes and its published key. */
export interface TokenIssuer {
  readonly tokenKey: TokenKey;
  routes(app: FastifyInstance): void;
}

/** Reads the issuer's private RSA JWK from `DIR/issuer-token-key.jwk`, creating it (0600) when missing. */
export async function loadOrCreateIssuerKey(dir: string): Promise<CryptoKeyPair> {
  const path = join(dir, ISSUER_KEY_FILE);
  let text: string | undefined;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) throw new MimiError('start_refused', `${path}: a secret must not be readable by others (chmod 600)`);
    if (info.size > MAX_KEY_FILE) throw new MimiError('start_refused', `${path}: larger than ${MAX_KEY_FILE} bytes`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new MimiError('start_refused', `${path}: cannot be read`, { cause: err });
  }
  if (text !== undefined) {
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
  const pair = await generateIssuerKey();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(await crypto.subtle.exportKey('jwk', pair.privateKey))}\n`, { mode: 0o600, flag: 'wx' });
  return pair;
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

/** Builds an issuer over its key. */
export async function buildIssuer(options: IssuerOptions): Promise<TokenIssuer> {
  const tokenKey = await publishTokenKey(options.keyPair.publicKey);
  // RFC 9474 BlindSign is RSASP1 on the blinded message, then a check that it verifies (RSAVP1). OpenSSL does the
  // private operation (with CRT) in about a millisecond; the library's pure-JavaScript one held the event loop for
  // about 0.4 s per token, so one attester within its quota could stall the issuer for everyone.
  const privateKey = KeyObject.from(options.keyPair.privateKey);
  const publicKey = KeyObject.from(options.keyPair.publicKey);
  const modulus = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
  const blindSign = (blinded: Buffer): Buffer => {
    if (blinded.length !== modulus.length || Buffer.compare(blinded, modulus) >= 0) throw new Error('the blinded message is not below the modulus');
    const signature = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, blinded);
    // RFC 9474 §4.3 step 3: verify before answering (a fault must not leak the key).
    if (!publicEncrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature).equals(blinded)) throw new Error('the signature does not verify');
    return signature;
  };
  const truncatedId = tokenKey.id[tokenKey.id.length - 1];
  const directory = JSON.stringify({
    'issuer-request-uri': TOKEN_REQUEST_PATH,
    'token-keys': [{ 'token-type': TOKEN_TYPE_BLIND_RSA, 'token-key': Buffer.from(tokenKey.spki).toString('base64url') }],
  });
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
    tokenKey,
    routes: (app) => {
      app.addContentTypeParser(TOKEN_REQUEST_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: TOKEN_REQUEST_LENGTH }, (_request, body, done) => done(null, body));
      app.get(ISSUER_DIRECTORY_PATH, async (_request, reply) =>
        reply.type(ISSUER_DIRECTORY_CONTENT_TYPE).header('cache-control', 'max-age=300').send(directory),
      );
      refuseOtherMethods(app, ISSUER_DIRECTORY_PATH, ['GET']);
      app.post(TOKEN_REQUEST_PATH, async (request, reply) => {
        const msp = attesterOf(request.raw, options);
        const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (type !== TOKEN_REQUEST_CONTENT_TYPE || !Buffer.isBuffer(request.body))
          throw new MimiError('invalid_request', `the body of ${TOKEN_REQUEST_PATH} must be ${TOKEN_REQUEST_CONTENT_TYPE}`, { status: 415 });
        const body = request.body;
        // RFC 9578 §6.2: exactly token_type (2), truncated_token_key_id, blinded_msg[Nk].
        if (body.length !== TOKEN_REQUEST_LENGTH || body.readUInt16BE(0) !== TOKEN_TYPE_BLIND_RSA)
          throw new MimiError('invalid_request', `a token request is ${TOKEN_REQUEST_LENGTH} bytes of token type 2`);
        if (body[2] !== truncatedId) throw new MimiError('invalid_request', 'the token request names another token key');
        charge(msp);
        let signature: Uint8Array;
        try {
          const tokenRequest = publicVerif.TokenRequest.deserialize(TOKEN_TYPES.BLIND_RSA, new Uint8Array(body));
          signature = new publicVerif.TokenResponse(blindSign(Buffer.from(tokenRequest.blindedMsg))).serialize();
        } catch (err) {
          // A blinded message out of range (RFC 9474 §4.2): the client's fault, not the issuer's.
          throw new MimiError('invalid_request', 'the blinded message cannot be signed', { cause: err });
        }
        options.logger.debug({ msp }, 'token issued');
        return reply.type(TOKEN_RESPONSE_CONTENT_TYPE).header('cache-control', 'no-store').send(Buffer.from(signature));
      });
      refuseOtherMethods(app, TOKEN_REQUEST_PATH, ['POST']);
    },
  };
}
