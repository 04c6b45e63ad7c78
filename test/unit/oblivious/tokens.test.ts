/**
 * Token type 2 against RFC 9578 Appendix A.2's vectors (the five of the RFC,
 * as test/fixtures/privacypass/rfc9578-token-type-2.json holds them): the
 * published key imports and its id is SHA-256 of its bytes, every token checks
 * against its challenge and no other, and the issuer, holding the vectors'
 * private key, answers every token request with the vector's blind signature
 * byte for byte (RSABSSA-SHA384-PSS-Deterministic signs deterministically).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildIssuer } from '../../../src/oblivious/issuer.ts';
import { checkToken, importTokenKey, TOKEN_RSA_PARAMS } from '../../../src/oblivious/tokens.ts';
import { createHttpApp } from '../../../src/server/http-common.ts';

interface Vector {
  readonly skS: string;
  readonly pkS: string;
  readonly token_challenge: string;
  readonly nonce: string;
  readonly token_request: string;
  readonly token_response: string;
  readonly token: string;
}

const vectors = JSON.parse(readFileSync('test/fixtures/privacypass/rfc9578-token-type-2.json', 'utf8')) as Vector[];
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const silent = pino({ level: 'silent' });
const unbound = { serverFactory: (handler: Parameters<typeof createServer>[1]) => createServer(handler) };

describe('RFC 9578 Appendix A.2 (token type 2)', () => {
  it('holds the five vectors', () => {
    expect(vectors).toHaveLength(5);
  });

  it.each(vectors.map((v, i) => [i + 1, v] as const))('vector %i: the key imports, the token checks against its challenge only', async (_n, v) => {
    const key = await importTokenKey(hex(v.pkS));
    expect(Buffer.from(key.id)).toEqual(createHash('sha256').update(hex(v.pkS)).digest());
    expect(hex(v.token_request)[2]).toBe(key.id[31]);
    expect(await checkToken(key, hex(v.token), [hex(v.token_challenge)])).toEqual({ kind: 'valid', challenge: 0, nonce: v.nonce });
    const other = hex(v.token_challenge);
    other[other.length - 1] = (other[other.length - 1] ?? 0) ^ 1;
    expect(await checkToken(key, hex(v.token), [other])).toMatchObject({ kind: 'refused' });
    const forged = hex(v.token);
    forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 1;
    expect(await checkToken(key, forged, [hex(v.token_challenge)])).toEqual({ kind: 'refused', reason: 'the token does not verify' });
    expect(await checkToken(key, hex(v.token).subarray(1), [hex(v.token_challenge)])).toMatchObject({ kind: 'refused' });
  });

  it('the issuer with the vectors’ key answers each token request with the vector’s blind signature', async () => {
    const first = vectors[0];
    if (first === undefined) throw new Error('no vectors');
    const pem = Buffer.from(first.skS, 'hex').toString('utf8');
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const privateKey = await crypto.subtle.importKey('pkcs8', der, TOKEN_RSA_PARAMS, true, ['sign']);
    const jwk = await crypto.subtle.exportKey('jwk', privateKey);
    const publicKey = await crypto.subtle.importKey('jwk', { kty: 'RSA', n: jwk.n ?? '', e: jwk.e ?? '' }, TOKEN_RSA_PARAMS, true, ['verify']);
    const apiKey = 'attester-key-0123456789';
    const issuer = await buildIssuer({
      keyPair: { privateKey, publicKey },
      keys: new Map([[createHash('sha256').update(apiKey).digest('hex'), 'msp-a']]),
      certs: new Map(),
      quotas: new Map([['msp-a', 100]]),
      logger: silent,
      now: Date.now,
    });
    expect(Buffer.from(issuer.tokenKey.spki).toString('hex')).toBe(first.pkS);
    const app = createHttpApp(silent, unbound);
    issuer.routes(app);
    try {
      for (const v of vectors) {
        const res = await app.inject({
          method: 'POST',
          url: '/token-request',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/private-token-request' },
          payload: Buffer.from(hex(v.token_request)),
        });
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toBe('application/private-token-response');
        expect(res.rawPayload.toString('hex')).toBe(v.token_response);
      }
    } finally {
      await app.close();
    }
  });
});
