/**
 * Recipient controls (PROTOCOL.md §15) on a hierarchy over mutual TLS: the
 * holder's signed `visibility` decides who finds a mapping. A table over
 * (audience x querier MSP x contact token x format); a hidden mapping answered
 * exactly as an absent one; caches kept apart per querier in both orders; a
 * spoofed Mimi-Querier-Msp believed from nobody but an authenticated resolver;
 * the token's hash, never the token, on the wire to DPs and nowhere in the logs;
 * a bad visibility refused; the DNS front-end serving public mappings only;
 * bilateral federation (`peering`).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tlsAgent } from '../../src/net/http-client.ts';
import { generateSigningKey, type SigningKey } from '../../src/protocol/jws.ts';
import { decodeBits } from '../../src/protocol/compact.ts';
import { hashContactToken, newContactToken, type Visibility } from '../../src/protocol/visibility.ts';
import { openDevPki } from '../../src/server/pki.ts';
import { readCodeFromOutbox } from '../../src/server/outbox.ts';
import { loadOrCreateKey } from '../../src/server/keys.ts';
import { proveCsi, registerThroughFlow } from '../../src/stub/register.ts';
import { signStatement, registerStatement } from '../../src/stub/msp.ts';
import { parseLimits } from '../../src/zone/limits-file.ts';
import type { LoadedZone } from '../../src/zone/load.ts';
import type { RootZone } from '../../src/zone/normalise.ts';
import { bootHierarchy, fixtureZones, zonesWithProvers, type TestHierarchy } from './harness.ts';

const KEYS = {
  'app-a': 'key-of-chat-a-app-0123456789',
  'app-b': 'key-of-chat-b-app-0123456789',
  'app-c': 'key-of-chat-c-app-0123456789',
  'app-d': 'key-of-chat-d-app-0123456789',
};
const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const LIMITS = `tiers:
  anonymous: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 }
  standard: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 }
perResolver: { rate: 100000, burst: 100000 }
clients:
  - { name: app-a, key: "${sha(KEYS['app-a'])}", tier: standard, msp: chat-a }
  - { name: app-b, key: "${sha(KEYS['app-b'])}", tier: standard, msp: chat-b }
  - { name: app-c, key: "${sha(KEYS['app-c'])}", tier: standard, msp: chat-c }
  - { name: app-d, key: "${sha(KEYS['app-d'])}", tier: standard, msp: chat-d }
`;

/** The zones with every endpoint https:// and a spy DP (recording what it is told) delegated e164:33. */
async function httpsZones(spyUrl: string): Promise<LoadedZone[]> {
  const zones = await fixtureZones(
    (root) => ({
      ...root,
      dps: [...root.dps, { id: 'dp-spy', endpoints: [spyUrl] }],
      delegations: [...root.delegations, { zone: 'e164:33', providers: ['dp-spy'] }],
    }),
    await zonesWithProvers(),
  );
  return JSON.parse(JSON.stringify(zones).replaceAll('"http://127.0.0.1:2', '"https://127.0.0.1:2')) as LoadedZone[];
}

let dir: string;
let h: TestHierarchy;
let ca: string;
let agent: Agent;
let spy: Server;
const spied: IncomingHttpHeaders[] = [];
const logs: string[] = [];
const holder = new Map<string, SigningKey>();
let token: string;

/** Registers `csi` on `msp` with a visibility, as the holder of `csi` (one holder per CSI). */
async function register(csi: string, msp: string, preference: number, visibility?: Visibility): Promise<void> {
  const root = h.zones.find((z) => z.zone.role === 'root')?.zone as RootZone;
  let key = holder.get(csi);
  if (key === undefined) {
    key = await generateSigningKey();
    holder.set(csi, key);
  }
  const reply = await registerThroughFlow({
    csi,
    msp,
    preference,
    root,
    holder: key,
    mspKey: await loadOrCreateKey(join(dir, 'keys'), msp),
    code: (id) => readCodeFromOutbox(join(dir, 'outbox'), id),
    dispatcher: agent,
    visibility,
  });
  expect('mapping' in reply).toBe(true);
}

type Who = 'anonymous' | keyof typeof KEYS;

async function resolve(
  csi: string,
  who: Who,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${h.resolverUrl}/v1/resolve`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...(who === 'anonymous' ? {} : { authorization: `Bearer ${KEYS[who]}` }), ...headers },
    body: JSON.stringify({ csi, ...extra }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

const mspsOf = (json: Record<string, unknown>): string[] => ((json.mappings as { msp: string }[] | undefined) ?? []).map((m) => m.msp);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-recipient-'));
  const pki = await openDevPki(join(dir, 'pki'));
  ca = pki.ca;
  agent = tlsAgent({ ca });
  // The spy DP: https with a certificate of the hierarchy's CA; it asks for client certificates as DPs do.
  spy = createServer({ ...(await pki.identity('dp-spy', ['127.0.0.1'])), requestCert: true, rejectUnauthorized: false, ca }, (req, res) => {
    spied.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'not_found', dp: 'dp-spy', zone: 'e164:33', ttl: 60 }));
    });
  });
  spy.listen(0, '127.0.0.1');
  await once(spy, 'listening');
  const spyUrl = `https://127.0.0.1:${(spy.address() as AddressInfo).port}`;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  h = await bootHierarchy({
    zones: await httpsZones(spyUrl),
    tls: { pkiDir: join(dir, 'pki') },
    keysDir: join(dir, 'keys'),
    trustAnchorFile: join(dir, 'keys', 'trust-anchor.jwk'),
    otpOutbox: join(dir, 'outbox'),
    limits: parseLimits(LIMITS, 'limits.yaml'),
    logger: pino({ level: 'debug' }, sink),
    dns: { port: 0, resolverDns: { host: '127.0.0.1', port: 0 } },
    resolver: { peering: { 'chat-d': ['chat-b'] } },
  });
  token = newContactToken();
  await register('+447700900501', 'chat-a', 1, { audience: 'same-msp' });
  await register('+447700900502', 'chat-b', 1, { audience: 'msps', msps: ['chat-c'] });
  await register('+447700900503', 'chat-c', 1, { audience: 'token', tokens: [hashContactToken(token)] });
  await register('+447700900504', 'chat-a', 1, { audience: 'public' });
  await register('+447700900504', 'chat-b', 2, { audience: 'same-msp' });
}, 60_000);
afterAll(async () => {
  await h.close();
  await agent.close();
  spy.closeAllConnections();
  spy.close();
  await rm(dir, { recursive: true, force: true });
});

describe('who finds what (PROTOCOL.md §15)', () => {
  // [csi, querier, token?, the MSPs found]
  const table: [string, Who, 'right' | 'wrong' | undefined, string[]][] = [
    ['+447700900501', 'anonymous', undefined, []],
    ['+447700900501', 'app-a', undefined, ['chat-a']],
    ['+447700900501', 'app-b', undefined, []],
    ['+447700900502', 'app-b', undefined, ['chat-b']], // its own MSP
    ['+447700900502', 'app-c', undefined, ['chat-b']], // a listed MSP
    ['+447700900502', 'app-a', undefined, []],
    ['+447700900502', 'anonymous', undefined, []],
    ['+447700900503', 'anonymous', 'right', ['chat-c']],
    ['+447700900503', 'app-c', undefined, []], // the token, not the MSP, decides
    ['+447700900503', 'app-a', 'wrong', []],
    ['+447700900504', 'anonymous', undefined, ['chat-a']],
    ['+447700900504', 'app-b', undefined, ['chat-a', 'chat-b']],
    ['+447700900504', 'app-a', 'right', ['chat-a']],
  ];
  for (const [csi, who, tok, found] of table) {
    for (const format of ['verbose', 'compact'] as const) {
      it(`${csi} asked by ${who}${tok !== undefined ? ` with the ${tok} token` : ''} (${format}): ${found.join(', ') || 'not found'}`, async () => {
        const contactTokens = tok === 'right' ? [token] : tok === 'wrong' ? [newContactToken()] : undefined;
        const res = await resolve(csi, who, { format, ...(contactTokens !== undefined ? { contactTokens } : {}) });
        expect(res.status).toBe(200);
        expect(res.json.status).toBe(found.length > 0 ? 'found' : 'not_found');
        if (format === 'verbose') expect(mspsOf(res.json)).toEqual(found);
        else {
          const bits = { 'chat-a': 0, 'chat-b': 1, 'chat-c': 2 } as const;
          expect(decodeBits(String(res.json.bits))).toEqual(found.map((m) => bits[m as keyof typeof bits]).sort());
        }
      });
    }
  }

  it('answers a hidden mapping exactly as an absent one: same status, members, TTL and compact bits', async () => {
    for (const format of ['verbose', 'compact'] as const) {
      const hidden = await resolve('+447700900501', 'app-b', { format });
      const absent = await resolve('+447700900599', 'app-b', { format });
      expect(Object.keys(hidden.json).sort()).toEqual(Object.keys(absent.json).sort());
      // The signed DP answers on the chain differ only in the question they answer and when they were signed.
      const chainOf = (json: Record<string, unknown>): unknown[] =>
        ((json.chain as { payload: string }[] | undefined) ?? []).map((j) => {
          // The question and the signing time (`iat`, whole seconds) differ between any two answers.
          const { csi: _csi, iat, ...rest } = JSON.parse(Buffer.from(j.payload, 'base64url').toString('utf8')) as Record<string, unknown>;
          expect(typeof iat).toBe('number');
          return rest;
        });
      expect(chainOf(hidden.json)).toEqual(chainOf(absent.json));
      const { csi: _a, cached: _c1, chain: _h, ...restHidden } = hidden.json;
      const { csi: _b, cached: _c2, chain: _k, ...restAbsent } = absent.json;
      expect(restHidden).toEqual(restAbsent);
    }
  });

  it('keeps one querier’s view out of another’s cache, in both orders', async () => {
    await register('+447700900511', 'chat-a', 1, { audience: 'same-msp' });
    await register('+447700900512', 'chat-a', 1, { audience: 'same-msp' });
    // The insider first, then an outsider and the anonymous.
    expect(mspsOf((await resolve('+447700900511', 'app-a')).json)).toEqual(['chat-a']);
    expect((await resolve('+447700900511', 'app-b')).json.status).toBe('not_found');
    expect((await resolve('+447700900511', 'anonymous')).json.status).toBe('not_found');
    // The anonymous first, then the insider.
    expect((await resolve('+447700900512', 'anonymous')).json.status).toBe('not_found');
    const insider = await resolve('+447700900512', 'app-a');
    expect(mspsOf(insider.json)).toEqual(['chat-a']);
    // And each view is cached for its own querier.
    expect((await resolve('+447700900512', 'app-a')).json.cached).toBe(true);
    expect((await resolve('+447700900512', 'anonymous')).json).toMatchObject({ status: 'not_found', cached: true });
  });

  it('believes Mimi-Querier-Msp from nobody but a resolver authenticated by mutual TLS', async () => {
    // A client of the resolver sending the header itself: ignored (it is anonymous).
    expect((await resolve('+447700900501', 'anonymous', {}, { 'mimi-querier-msp': 'chat-a' })).json.status).toBe('not_found');
    // A client asking the DP directly, without a client certificate, claiming chat-a: public only.
    const dp = h.servers['dp-uk']?.[0] ?? '';
    const res = await request(`${dp}/v1/lookup`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', 'mimi-querier-msp': 'chat-a' },
      body: JSON.stringify({ csi: 'tel:+447700900501' }),
    });
    const body = (await res.body.json()) as { payload: string };
    expect(JSON.parse(Buffer.from(body.payload, 'base64url').toString('utf8'))).toMatchObject({ kind: 'not_found' });
  });

  it('tells DPs the token’s hash and the querier’s MSP, never the token, and logs neither token nor hash', async () => {
    spied.length = 0;
    const mine = newContactToken();
    await resolve('+33199001234', 'app-a', { contactTokens: [mine] });
    expect(spied).toHaveLength(1);
    expect(spied[0]?.['mimi-querier-msp']).toBe('chat-a');
    expect(spied[0]?.['mimi-contact-token-hash']).toBe(hashContactToken(mine));
    expect(JSON.stringify(spied)).not.toContain(mine);
    expect(logs.join('')).not.toContain(mine);
    expect(logs.join('')).not.toContain(token);
    expect(logs.join('')).not.toContain(hashContactToken(mine));
  });

  it('refuses a bad visibility or a tampered one with its code, and a malformed contact token', async () => {
    const root = h.zones.find((z) => z.zone.role === 'root')?.zone as RootZone;
    const key = await generateSigningKey();
    const attestation = await proveCsi(root, '+447700900520', key, (id) => readCodeFromOutbox(join(dir, 'outbox'), id), agent);
    const mspKey = await loadOrCreateKey(join(dir, 'keys'), 'chat-a');
    const dpUrl = h.servers['dp-uk']?.[0] ?? '';
    const base = { csi: 'tel:+447700900520', msp: 'chat-a', preference: 1, created: new Date().toISOString(), dp: 'dp-uk', attestation };
    const bad = await signStatement({ ...base, visibility: { audience: 'friends' } } as never, key, mspKey);
    await expect(registerStatement(dpUrl, bad, agent)).rejects.toMatchObject({ code: 'invalid_request' });
    // A visibility changed after signing: the signatures no longer cover the payload.
    const good = await signStatement({ ...base, visibility: { audience: 'same-msp' } }, key, mspKey);
    const payload = JSON.parse(Buffer.from(good.payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const tampered = { ...good, payload: Buffer.from(JSON.stringify({ ...payload, visibility: { audience: 'public' } })).toString('base64url') };
    await expect(registerStatement(dpUrl, tampered, agent)).rejects.toMatchObject({ code: 'bad_signature' });
    expect((await resolve('+447700900504', 'anonymous', { contactTokens: ['short'] })).json).toMatchObject({ code: 'invalid_request' });
  });

  it('serves only public mappings over DNS', async () => {
    const { dig } = await import('./harness.ts');
    const name = '4.0.5.0.0.9.0.0.7.7.4.4.e164.mimi.arpa';
    const answer = await dig(h.resolverDns ?? '', ['NAPTR', name]);
    expect(answer.answer.join('\n')).toContain('mimi:chat-a');
    expect(answer.answer.join('\n')).not.toContain('mimi:chat-b');
    const hidden = await dig(h.resolverDns ?? '', ['NAPTR', '1.0.5.0.0.9.0.0.7.7.4.4.e164.mimi.arpa']);
    expect(hidden.answer).toEqual([]);
  });

  it('limits a querier of an MSP with a peering entry to its peers and itself (bilateral federation), and discloses it', async () => {
    // bob@example.com is on chat-a and chat-c; chat-d peers with chat-b only.
    expect(mspsOf((await resolve('bob@example.com', 'anonymous')).json)).toEqual(['chat-a', 'chat-c']);
    expect((await resolve('bob@example.com', 'app-d')).json.status).toBe('not_found');
    expect(mspsOf((await resolve('+447700900504', 'app-d')).json)).toEqual([]);
    const wk = (await (await request(`${h.resolverUrl}/.well-known/mimi-discovery`, { dispatcher: agent })).body.json()) as { limits: { peering?: unknown } };
    expect(wk.limits.peering).toEqual({ 'chat-d': ['chat-b'] });
    expect(JSON.stringify(wk)).not.toContain('app-d');
  });
});

describe('the DP’s store', () => {
  it('keeps the visibility across a read (the proof carries it for anyone to verify)', async () => {
    const res = await resolve('+447700900501', 'app-a');
    const proof = (res.json.mappings as { proof: { payload: string } }[])[0]?.proof;
    expect(JSON.parse(Buffer.from(proof?.payload ?? '', 'base64url').toString('utf8'))).toMatchObject({ visibility: { audience: 'same-msp' } });
  });
});
