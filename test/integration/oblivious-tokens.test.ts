/**
 * Privacy Pass tokens in oblivious discovery (PROTOCOL.md §14, RFC 9577,
 * RFC 9578 type 2): an issuer for two MSPs (attesters by API key) with daily
 * quotas, a gateway that requires tokens (its key fetched from the issuer's
 * directory), a relay, the stub. A request without a token is answered 401
 * inside the encapsulation with the PrivateToken challenge; a token obtained
 * through the MSP is accepted once and refused the second time; a token of
 * another origin is refused; each MSP has its own quota; the resolver counts
 * tokens, not the relay's address; no log holds a CSI or the client's address.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenChallenge, WWWAuthenticateHeader } from '@cloudflare/privacypass-ts';
import pino from 'pino';
import { Agent, request as undiciRequest } from 'undici';
import { problemError, tlsAgent } from '../../src/net/http-client.ts';
import { openDevPki, spkiHash } from '../../src/server/pki.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObliviousClient } from '../../src/oblivious/client.ts';
import { addGatewayRoutes, resolverHandler } from '../../src/oblivious/gateway.ts';
import { buildIssuer, generateIssuerKey, ISSUER_KEY_FILE, loadOrCreateIssuerKey, type TokenIssuer } from '../../src/oblivious/issuer.ts';
import { KeyRing } from '../../src/oblivious/key-ring.ts';
import { buildRelay, type Relay } from '../../src/oblivious/relay.ts';
import { fetchTokenKey, sendTokenRequest, tokenFor, watchTokenKey, type TokenKeySource } from '../../src/oblivious/token-client.ts';
import { publishTokenKey, TokenGate } from '../../src/oblivious/tokens.ts';
import type { ClientIdentity } from '../../src/limits/rate-limit.ts';
import { bindHttp, type BoundHttp } from '../../src/server/bind.ts';
import { createHttpApp } from '../../src/server/http-common.ts';
import { StubResolver } from '../../src/stub/stub-resolver.ts';
import { DEFAULT_LIMITS } from '../../src/zone/limits-file.ts';
import { bootHierarchy, type TestHierarchy } from './harness.ts';

const logged: string[] = [];
const recorder = pino({ level: 'trace' }, { write: (line: string) => void logged.push(line) });
const DAY = 86_400_000;
const CLIENT_ADDRESS = '127.0.0.2';
const KEY_A = 'msp-a-api-key-0123456789';
const KEY_B = 'msp-b-api-key-0123456789';
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

describe('Privacy Pass tokens at the gateway', () => {
  let h: TestHierarchy;
  let issuerListener: BoundHttp;
  let gatewayListener: BoundHttp;
  let relayListener: BoundHttp;
  let issuer: TokenIssuer;
  let relay: Relay;
  let source: TokenKeySource;
  let gate: TokenGate;
  const clock = { now: Date.parse('2026-11-23T12:00:00Z') };
  const client = new Agent({ connect: { localAddress: CLIENT_ADDRESS } });
  /** Who the resolver counted each oblivious request as. */
  const counted: (ClientIdentity | undefined)[] = [];

  beforeAll(async () => {
    h = await bootHierarchy();
    const resolver = h.resolver;
    if (resolver === undefined) throw new Error('the hierarchy runs no resolver');
    issuer = await buildIssuer({
      keyPair: await generateIssuerKey(),
      keys: new Map([
        [sha256(KEY_A), 'msp-a'],
        [sha256(KEY_B), 'msp-b'],
      ]),
      certs: new Map(),
      quotas: new Map([
        ['msp-a', 100],
        ['msp-b', 2],
      ]),
      logger: recorder,
      now: () => clock.now,
    });
    issuerListener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const issuerApp = createHttpApp(recorder, issuerListener);
    issuer.routes(issuerApp);
    await issuerListener.attach(issuerApp);

    source = watchTokenKey(issuerListener.url, { logger: recorder });
    await source.ready;
    gatewayListener = await bindHttp({ host: '127.0.0.1', port: 0 });
    gate = new TokenGate({
      issuerName: new URL(issuerListener.url).host,
      origin: new URL(gatewayListener.url).host,
      tokenKeys: () => source.keys(),
      periodMs: 7 * DAY,
      now: () => clock.now,
    });
    const keys = await KeyRing.create({ rotationMs: 7 * DAY, now: () => clock.now });
    const handler = resolverHandler(() => resolver);
    const gatewayApp = createHttpApp(recorder, gatewayListener);
    addGatewayRoutes(gatewayApp, {
      keys,
      resolve: (content, outer, who) => {
        counted.push(who);
        return handler(content, outer, who);
      },
      logger: recorder,
      tokens: gate,
      limits: () => resolver.limits,
    });
    await gatewayListener.attach(gatewayApp);
    relayListener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const relayApp = createHttpApp(recorder, relayListener);
    relay = buildRelay({ gateway: `${gatewayListener.url}/v1/ohttp`, limits: DEFAULT_LIMITS, logger: recorder, now: () => clock.now });
    relay.routes(relayApp);
    await relayListener.attach(relayApp);
  });

  afterAll(async () => {
    source?.close();
    await client.close();
    await relayListener?.close(0);
    await relay?.close();
    await gatewayListener?.close(0);
    await issuerListener?.close(0);
    await h?.close();
  });

  const raw = (tokens?: ConstructorParameters<typeof ObliviousClient>[0]['tokens']): ObliviousClient =>
    new ObliviousClient({ relay: relayListener.url, dispatcher: client, ...(tokens !== undefined ? { tokens } : {}) });
  const viaMsp = (apiKey: string) => ({ issuer: issuerListener.url, apiKey });

  it('publishes its token key in the RFC 9578 directory', async () => {
    const res = await fetch(`${issuerListener.url}/.well-known/private-token-issuer-directory`);
    expect(res.headers.get('content-type')).toBe('application/private-token-issuer-directory');
    const directory = (await res.json()) as { 'issuer-request-uri': string; 'token-keys': { 'token-type': number; 'token-key': string }[] };
    expect(directory['issuer-request-uri']).toBe('/token-request');
    expect(directory['token-keys'].map((k) => k['token-type'])).toEqual([2]);
    const key = await fetchTokenKey(issuerListener.url);
    expect(Buffer.from(key.id)).toEqual(Buffer.from(issuer.tokenKey.id));
  });

  it('answers a request without a token 401 inside, with the PrivateToken challenge bound to the gateway', async () => {
    const answer = await raw().resolveJson({ csi: '+447700900123' });
    expect(answer.status).toBe(401);
    expect(answer.json).toMatchObject({ code: 'unauthorized', status: 401 });
    const challenge = gate.challengeHeader() ?? '';
    const parsed = WWWAuthenticateHeader.parse(challenge);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]?.challenge.tokenType).toBe(2);
    expect(parsed[0]?.challenge.issuerName).toBe(new URL(issuerListener.url).host);
    expect(parsed[0]?.challenge.originInfo).toEqual([new URL(gatewayListener.url).host]);
    expect(Buffer.from(parsed[0]?.tokenKey ?? [])).toEqual(Buffer.from(issuer.tokenKey.spki));
  });

  it('obtains a token through the MSP, answers as /v1/resolve does, and counts the token, not the relay', async () => {
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', oblivious: { relay: relayListener.url, tokens: viaMsp(KEY_A) }, dispatcher: client });
    const direct = new StubResolver({ resolver: h.resolverUrl ?? '' });
    await direct.resolve('+447700900123'); // warm: both answers below come from the cache
    counted.length = 0;
    const oblivious = await stub.resolve('+447700900123');
    expect(oblivious).toEqual(await direct.resolve('+447700900123'));
    expect(await stub.resolve('+33199000000')).toMatchObject({ status: 'not_found' });
    expect(counted.map((c) => c?.identity)).toEqual(['token', 'token']);
  });

  it('accepts a token once and refuses it the second time', async () => {
    const spent: string[] = [];
    const once = raw(async (challenge) => {
      const token = spent[0] ?? (await tokenFor(challenge, (request) => sendTokenRequest(issuerListener.url, KEY_A, request)));
      spent.push(token);
      return token;
    });
    expect((await once.resolveJson({ csi: '+447700900123' })).status).toBe(200);
    const again = await once.resolveJson({ csi: '+447700900123' });
    expect(again.status).toBe(401);
    expect(again.json).toMatchObject({ code: 'unauthorized', detail: 'the token was spent before' });
    expect(new Set(spent).size).toBe(1);
  });

  it('spends handed-over tokens one each, then is refused', async () => {
    const challenge = gate.challengeHeader() ?? '';
    const tokens = [
      await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_A, r)),
      await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_A, r)),
    ];
    const handed = raw(tokens.map((t) => t.replace(/^PrivateToken token="?([^"]*)"?$/, '$1')));
    expect((await handed.resolveJson({ csi: '+447700900123' })).status).toBe(200);
    expect((await handed.resolveJson({ csi: '+447700900123' })).status).toBe(200);
    expect(await handed.resolveJson({ csi: '+447700900123' })).toMatchObject({ status: 401, json: { code: 'unauthorized' } });
  });

  it('refuses a token for another origin, and a token of another period', async () => {
    const other = new TokenGate({
      issuerName: new URL(issuerListener.url).host,
      origin: 'other.example',
      tokenKeys: () => source.keys(),
      periodMs: 7 * DAY,
      now: () => clock.now,
    });
    const foreign = await tokenFor(other.challengeHeader() ?? '', (r) => sendTokenRequest(issuerListener.url, KEY_A, r));
    expect(await raw([foreign]).resolveJson({ csi: '+447700900123' })).toMatchObject({
      status: 401,
      json: { detail: 'the token answers no current challenge of this gateway' },
    });
    const early = await tokenFor(gate.challengeHeader() ?? '', (r) => sendTokenRequest(issuerListener.url, KEY_A, r));
    const saved = clock.now;
    clock.now += 14 * DAY; // two periods on: the challenge of the token's period is no longer accepted
    try {
      expect(await raw([early]).resolveJson({ csi: '+447700900123' })).toMatchObject({ status: 401 });
    } finally {
      clock.now = saved;
    }
  });

  it('keeps each MSP within its own daily quota, 429 with Retry-After to 00:00 UTC', async () => {
    const challenge = gate.challengeHeader() ?? '';
    for (let i = 0; i < 2; i += 1) await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_B, r));
    const refused = await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_B, r)).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'rate_limited' });
    const stub = new StubResolver({ resolver: h.resolverUrl ?? '', oblivious: { relay: relayListener.url, tokens: viaMsp(KEY_B) }, dispatcher: client });
    await expect(stub.resolve('+447700900123')).rejects.toMatchObject({ code: 'rate_limited' });
    // msp-a's quota is its own.
    await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_A, r));
    const request = new Uint8Array(259);
    request.set([0, 2, issuer.tokenKey.id[31] ?? 0]);
    const res = await fetch(`${issuerListener.url}/token-request`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY_B}`, 'content-type': 'application/private-token-request' },
      body: request,
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBe(12 * 3600);
    const saved = clock.now;
    clock.now += DAY / 2;
    try {
      await tokenFor(challenge, (r) => sendTokenRequest(issuerListener.url, KEY_B, r));
    } finally {
      clock.now = saved;
    }
  });

  it('refuses token requests from unknown attesters and malformed ones, by code', async () => {
    const post = async (headers: Record<string, string>, body: Uint8Array): Promise<{ status: number; code: unknown }> => {
      const res = await fetch(`${issuerListener.url}/token-request`, { method: 'POST', headers, body });
      return { status: res.status, code: ((await res.json()) as { code?: unknown }).code };
    };
    const type = { 'content-type': 'application/private-token-request' };
    const good = new Uint8Array(259);
    good.set([0, 2, issuer.tokenKey.id[31] ?? 0]);
    expect(await post(type, good)).toEqual({ status: 401, code: 'unauthorized' });
    expect(await post({ ...type, authorization: 'Bearer not-a-known-key' }, good)).toEqual({ status: 401, code: 'unauthorized' });
    const auth = { authorization: `Bearer ${KEY_A}` };
    const json = await fetch(`${issuerListener.url}/token-request`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{"csi":"+12025550123"}',
    });
    expect(json.status).toBe(415);
    expect(await post({ ...auth, ...type }, good.subarray(0, 100))).toEqual({ status: 400, code: 'invalid_request' });
    expect(await post({ ...auth, ...type }, new Uint8Array(4096))).toMatchObject({ status: 413 });
    const otherKey = Uint8Array.from(good);
    otherKey[2] = (otherKey[2] ?? 0) ^ 1;
    expect(await post({ ...auth, ...type }, otherKey)).toEqual({ status: 400, code: 'invalid_request' });
    const wrongType = Uint8Array.from(good);
    wrongType[1] = 1;
    expect(await post({ ...auth, ...type }, wrongType)).toEqual({ status: 400, code: 'invalid_request' });
  });

  it('logs neither a CSI, nor the client address, nor an API key, at any level', () => {
    const text = logged.join('\n');
    expect(logged.length).toBeGreaterThan(0);
    for (const secret of ['447700900123', '7700900123', '33199000000', 'tel:', CLIENT_ADDRESS, KEY_A, KEY_B]) expect(text).not.toContain(secret);
  });
});

describe('an attester known by its client certificate', () => {
  it('has its token requests signed within its quota; an unknown certificate is refused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-issuer-tls-'));
    const pki = await openDevPki(dir);
    const server = await pki.identity('issuer', ['127.0.0.1']);
    const known = await pki.identity('msp-c-client', []);
    const stranger = await pki.identity('stranger', []);
    const hashOf = (pem: string): string => spkiHash(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }));
    const issuer = await buildIssuer({
      keyPair: await generateIssuerKey(),
      keys: new Map(),
      certs: new Map([[hashOf(known.cert), 'msp-c']]),
      quotas: new Map([['msp-c', 1]]),
      logger: pino({ level: 'silent' }),
      now: Date.now,
    });
    const listener = await bindHttp({ host: '127.0.0.1', port: 0, tls: { ...server, clientCa: pki.ca, requireClientCert: false } });
    const app = createHttpApp(pino({ level: 'silent' }), listener);
    issuer.routes(app);
    await listener.attach(app);
    const gate = new TokenGate({ issuerName: 'issuer.test', origin: 'gateway.test', tokenKeys: () => [issuer.tokenKey], periodMs: DAY, now: Date.now });
    const asClient = (identity: { cert: string; key: string }) => tlsAgent({ ca: pki.ca, cert: identity.cert, key: identity.key });
    const agents = [asClient(known), asClient(stranger), tlsAgent({ ca: pki.ca })];
    try {
      const sign = (agent: (typeof agents)[number]) => (request: Uint8Array) => postTokenRequest(listener.url, request, agent);
      const token = await tokenFor(gate.challengeHeader() ?? '', sign(agents[0]!));
      expect(await gate.redeem(token)).toEqual({ kind: 'accepted' });
      await expect(tokenFor(gate.challengeHeader() ?? '', sign(agents[0]!))).rejects.toMatchObject({ code: 'rate_limited' });
      await expect(tokenFor(gate.challengeHeader() ?? '', sign(agents[1]!))).rejects.toMatchObject({ code: 'unauthorized' });
      await expect(tokenFor(gate.challengeHeader() ?? '', sign(agents[2]!))).rejects.toMatchObject({ code: 'unauthorized' });
    } finally {
      for (const agent of agents) await agent.close();
      await listener.close(0);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a gateway that does not hold the key a token names', () => {
  it('refuses the token as invalid and asks for the directory again; once it holds the key the token is accepted', async () => {
    const issuer = await buildIssuer({
      keyPair: await generateIssuerKey(),
      keys: new Map([[sha256(KEY_A), 'msp-a']]),
      certs: new Map(),
      quotas: new Map([['msp-a', 10]]),
      logger: pino({ level: 'silent' }),
      now: Date.now,
    });
    const other = await publishTokenKey((await generateIssuerKey()).publicKey);
    let held = [other];
    let asked = 0;
    const results: string[] = [];
    const gate = new TokenGate({
      issuerName: 'issuer.test',
      origin: 'gateway.test',
      tokenKeys: () => held,
      onUnknownKey: () => (asked += 1),
      observe: (result) => results.push(result),
      periodMs: DAY,
      now: Date.now,
    });
    // A client holding the issuer's new key: its challenge names that key, the gate still holds only the other one.
    const challenge = new WWWAuthenticateHeader(TokenChallenge.deserialize(challengeOf(gate.challengeHeader())), issuer.tokenKey.spki).toString(true);
    const listener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const app = createHttpApp(pino({ level: 'silent' }), listener);
    issuer.routes(app);
    await listener.attach(app);
    let token: string;
    try {
      token = await tokenFor(challenge, (request) => sendTokenRequest(listener.url, KEY_A, request));
    } finally {
      await listener.close(0);
    }
    expect(await gate.redeem(token)).toMatchObject({ kind: 'refused', code: 'invalid' });
    expect(asked).toBe(1);
    held = [issuer.tokenKey, other];
    expect(await gate.redeem(token)).toEqual({ kind: 'accepted' });
    expect(await gate.redeem(token)).toMatchObject({ kind: 'refused', code: 'spent' });
    expect(await gate.redeem(undefined)).toMatchObject({ kind: 'refused', code: 'missing' });
    expect(results).toEqual(['invalid', 'accepted', 'spent', 'missing']);
  });
});

/** The serialized challenge of a `WWW-Authenticate: PrivateToken challenge=...` value. */
function challengeOf(header: string | undefined): Uint8Array {
  const parsed = WWWAuthenticateHeader.parse(header ?? '')[0];
  if (parsed === undefined) throw new Error('no challenge');
  return parsed.challenge.serialize();
}

/** POSTs a token request with no API key, as an attester known by its certificate does. */
async function postTokenRequest(issuer: string, request: Uint8Array, dispatcher: Agent): Promise<Uint8Array> {
  const answer = await undiciRequest(`${issuer}/token-request`, {
    method: 'POST',
    headers: { 'content-type': 'application/private-token-request' },
    body: request,
    dispatcher,
  });
  const body = Buffer.from(await answer.body.arrayBuffer());
  if (answer.statusCode !== 200) throw problemError(answer.statusCode, JSON.parse(body.toString('utf8')) as unknown, 'the issuer');
  return new Uint8Array(body);
}

describe('the issuer key and directory', () => {
  it('is created 0600 under the key directory and read back the same', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-issuer-'));
    try {
      const first = await loadOrCreateIssuerKey(dir);
      expect((await stat(join(dir, ISSUER_KEY_FILE))).mode & 0o777).toBe(0o600);
      const again = await loadOrCreateIssuerKey(dir);
      const spki = async (k: CryptoKey): Promise<Buffer> => Buffer.from(await crypto.subtle.exportKey('spki', k));
      expect(await spki(again.publicKey)).toEqual(await spki(first.publicKey));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a directory whose key is not a 2048-bit RSA key', async () => {
    const listener = await bindHttp({ host: '127.0.0.1', port: 0 });
    const app = createHttpApp(pino({ level: 'silent' }), listener);
    app.get('/.well-known/private-token-issuer-directory', () =>
      Promise.resolve({
        'issuer-request-uri': '/token-request',
        'token-keys': [{ 'token-type': 2, 'token-key': 'AAAA' }],
      }),
    );
    await listener.attach(app);
    try {
      await expect(fetchTokenKey(listener.url)).rejects.toMatchObject({ code: 'upstream_unavailable' });
    } finally {
      await listener.close(0);
    }
  });
});
