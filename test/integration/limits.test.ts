/**
 * Client identity, rate limits, upstream protection and privacy (PROTOCOL.md
 * §10): each cost class, Retry-After, the not-found budget (also under a real
 * enumeration load), API keys, a DP's qps, and what a DP learns of the client.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLimits } from '../../src/zone/limits-file.ts';
import { checkDig } from '../fixtures/prerequisites.ts';
import { bootHierarchy, dig, fixtureZones, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

const hasDig = checkDig('the DNS front-end limit test');

const KEY = 'an-api-key-of-msp-a-0123456789';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const limits = parseLimits(
  `tiers:
  anonymous: { rate: 10, burst: 10, notFoundRate: 1, notFoundBurst: 3 }
  standard: { rate: 1000, burst: 1000, notFoundRate: 100, notFoundBurst: 100 }
clients:
  - { name: msp-a, key: "sha256:${sha(KEY)}", tier: standard }
perResolver: { rate: 1000, burst: 1000 }
`,
  'limits.yaml',
);

const roomyServers = parseLimits('tiers: { anonymous: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 } }\n', 'servers.yaml');

/** POSTs to the resolver from a given loopback source address, optionally with an API key. */
async function ask(h: TestHierarchy, body: unknown, from: Agent, key?: string) {
  const res = await request(`${h.resolverUrl}/v1/resolve`, {
    method: 'POST',
    dispatcher: from,
    headers: { 'content-type': 'application/json', ...(key !== undefined ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, retryAfter: res.headers['retry-after'], json: (await res.body.json()) as Record<string, unknown> };
}

const agents: Agent[] = [];
const from = (address: string): Agent => {
  const agent = new Agent({ localAddress: address });
  agents.push(agent);
  return agent;
};

let h: TestHierarchy;
let dp: ScriptedServer;

beforeAll(async () => {
  // A scripted DP for +33 (French drama numbers), stated at 5 qps in the registry: it records what it receives.
  dp = await scriptedDp(() => [200, { kind: 'not_found', dp: 'dp-fr', zone: 'e164:33', ttl: 60 }]);
  const zones = await fixtureZones((root) => ({
    ...root,
    dps: [...root.dps, { id: 'dp-fr', endpoints: [dp.url], qps: 5 }],
    delegations: [...root.delegations, { zone: 'e164:33', providers: ['dp-fr'] }],
  }));
  // The in-process resolver talks to its DPs over plain HTTP, without a client certificate: the DPs' own limits
  // (PROTOCOL.md §16) would count it as one anonymous client, so they get a roomy anonymous tier here.
  h = await bootHierarchy({ zones, limits, serverLimits: roomyServers });
});
afterAll(async () => {
  await h.close();
  await dp.close();
  await Promise.all(agents.map((a) => a.close()));
});

describe('query costs and Retry-After (the test clock: no refill unless it moves)', () => {
  it('costs 1 per default query: the burst, then 429 rate_limited with Retry-After; honoured, it passes', async () => {
    const me = from('127.0.11.1');
    for (let i = 0; i < 10; i++) expect((await ask(h, { csi: '+447700900123' }, me)).status).toBe(200);
    const refused = await ask(h, { csi: '+447700900123' }, me);
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe('rate_limited');
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    h.clock.advance(Number(refused.retryAfter));
    expect((await ask(h, { csi: '+447700900123' }, me)).status).toBe(200);
  });

  it('costs the number of DPs asked for client-selected', async () => {
    const me = from('127.0.12.1');
    const body = { csi: 'bob@example.com', federation: { mode: 'client-selected', dps: ['dp-mail-a', 'dp-mail-b'] } };
    for (let i = 0; i < 5; i++) expect((await ask(h, body, me)).status).toBe(200); // 5 x 2 = 10
    expect((await ask(h, { csi: '+447700900123' }, me)).status).toBe(429);
  });

  it('costs 10 per DP asked for all, charged after the walk (a debt repaid by waiting)', async () => {
    const me = from('127.0.13.1');
    const all = await ask(h, { csi: 'bob@example.com', federation: { mode: 'all' } }, me);
    expect(all.status).toBe(200);
    const asked = new Set(all.json.path as string[]).size;
    expect(asked).toBeGreaterThan(1);
    const refused = await ask(h, { csi: '+447700900123' }, me);
    expect(refused.status).toBe(429);
    // 10 tokens, minus 10 per DP asked: one query needs 10 * asked - 9 more, at 10 per second.
    const wait = Math.ceil((10 * asked - 9) / 10);
    expect(Number(refused.retryAfter)).toBe(wait);
    h.clock.advance(wait - 1);
    expect((await ask(h, { csi: '+447700900123' }, me)).status).toBe(429);
    h.clock.advance(1);
    expect((await ask(h, { csi: '+447700900123' }, me)).status).toBe(200);
  });

  it('refuses every query once the not-found budget is spent, found numbers included', async () => {
    const me = from('127.0.14.1');
    for (const n of ['+447700900901', '+447700900902', '+447700900903']) expect((await ask(h, { csi: n }, me)).json.status).toBe('not_found');
    const found = await ask(h, { csi: '+447700900123' }, me);
    expect(found.status).toBe(429);
    expect(found.json.code).toBe('rate_limited');
    h.clock.advance(1);
    expect((await ask(h, { csi: '+447700900123' }, me)).json.status).toBe('found');
  });

  it('gives a known API key its tier, and answers an unknown one 401 (never anonymous)', async () => {
    const me = from('127.0.15.1');
    for (let i = 0; i < 30; i++) expect((await ask(h, { csi: '+447700900123' }, me, KEY)).status).toBe(200);
    const unknown = await ask(h, { csi: '+447700900123' }, me, 'not-a-key-we-know-0000000');
    expect(unknown.status).toBe(401);
    expect(unknown.json.code).toBe('unauthorized');
  });

  it('discloses tiers, costs and the negative TTL cap in well-known, never a client name or key', async () => {
    const text = await (await fetch(`${h.resolverUrl}/.well-known/mimi-discovery`)).text();
    const wk = JSON.parse(text) as { limits: Record<string, unknown> };
    expect(wk.limits).toMatchObject({
      tiers: { anonymous: { rate: 10, burst: 10, notFoundRate: 1, notFoundBurst: 3 } },
      costs: { default: 1 },
      maxNegativeTtl: 60,
    });
    expect(text).not.toContain('msp-a');
    expect(text).not.toContain(sha(KEY));
    const dpWk = (await (await fetch(`${h.servers['dp-uk']?.[0]}/.well-known/mimi-discovery`)).json()) as { limits: Record<string, unknown> };
    // A DP discloses its own limits (here the roomy ones of `serverLimits`: perResolver at the defaults).
    expect(dpWk.limits).toMatchObject({ perResolver: { rate: 1000, burst: 2000 }, tiers: { anonymous: { rate: 100000 } }, aggregate: { ipv4: 24, ipv6: 56 } });
  });
});

describe('upstream protection and privacy', () => {
  it('never sends a DP stated at 5 qps more than its bucket allows under a burst', async () => {
    dp.requests.length = 0;
    const started = Date.now();
    const times: number[] = [];
    const original = dp.requests.push.bind(dp.requests);
    dp.requests.push = (...items) => {
      times.push(Date.now() - started);
      return original(...items);
    };
    const burst = Array.from({ length: 20 }, (_, i) => ask(h, { csi: `+3319900${String(1000 + i)}` }, from('127.0.16.1'), KEY));
    const answers = await Promise.all(burst);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(times).toHaveLength(20);
    // A bucket of 5 refilled at 5 per second: by time t, at most 5 + 5t requests (50 ms of timer slack).
    for (const [i, t] of [...times].sort((a, b) => a - b).entries()) expect(i + 1).toBeLessThanOrEqual(5 + Math.floor((5 * (t + 50)) / 1000));
  }, 15_000);

  it('sends a DP the client tag and nothing that identifies the client', async () => {
    dp.requests.length = 0;
    await ask(h, { csi: '+33199009001' }, from('127.0.17.1'), KEY);
    await ask(h, { csi: '+33199009002' }, from('127.0.17.1'), KEY);
    const [first, second] = dp.requests;
    expect(first?.headers['mimi-client-tag']).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(second?.headers['mimi-client-tag']).toBe(first?.headers['mimi-client-tag']); // stable within a day
    const names = Object.keys(first?.headers ?? {}).sort();
    for (const name of names) expect(['accept', 'connection', 'content-length', 'content-type', 'host', 'mimi-client-tag', 'user-agent']).toContain(name);
    const all = JSON.stringify(first?.headers);
    expect(all).not.toContain(KEY);
    expect(all).not.toContain('msp-a');
    expect(all).not.toContain('127.0.0.17');
    // Another client: another tag; the next UTC day: another tag for the same client.
    await ask(h, { csi: '+33199009003' }, from('127.0.18.1'));
    expect(dp.requests[2]?.headers['mimi-client-tag']).not.toBe(first?.headers['mimi-client-tag']);
    h.clock.advance(86_400);
    await ask(h, { csi: '+33199009004' }, from('127.0.17.1'), KEY);
    expect(dp.requests[3]?.headers['mimi-client-tag']).not.toBe(first?.headers['mimi-client-tag']);
  });
});

describe('anti-enumeration under load (real clock)', () => {
  it('stops a client walking 10,000 numbers while a normal client keeps >= 99% success', async () => {
    const real = await bootHierarchy({
      limits: parseLimits('tiers: { anonymous: { rate: 20, burst: 40, notFoundRate: 0.5, notFoundBurst: 20 } }\n', 'defaults'),
      realClock: true,
    });
    try {
      const walker = from('127.0.21.1');
      const normal = from('127.0.22.1');
      let next = 0;
      let learned = 0;
      let refused = 0;
      const started = Date.now();
      const walk = async (): Promise<void> => {
        // +999 is an unassigned country code: every number of the walk is fictional.
        while (next < 10_000 && Date.now() - started < 20_000) {
          const csi = `+999${String(100_000_000 + next++)}`;
          const res = await ask(real, { csi }, walker);
          if (res.status === 200) learned += 1;
          else refused += 1;
        }
      };
      const normalResults: number[] = [];
      let walking = true;
      const steady = async (): Promise<void> => {
        while (walking) {
          normalResults.push((await ask(real, { csi: '+447700900123' }, normal)).status);
          await new Promise((resolve) => setTimeout(resolve, 100)); // 10 queries per second, half its tier's rate
        }
      };
      const normalRun = steady();
      await Promise.all(Array.from({ length: 8 }, walk));
      walking = false;
      await normalRun;
      const seconds = (Date.now() - started) / 1000;
      expect(next).toBe(10_000);
      expect(refused).toBeGreaterThan(9_000);
      expect(learned).toBeLessThanOrEqual(20 + Math.ceil(0.5 * seconds) + 1); // the burst, then 0.5 per second
      expect(normalResults.length).toBeGreaterThan(0);
      expect(normalResults.filter((s) => s === 200).length / normalResults.length).toBeGreaterThanOrEqual(0.99);
    } finally {
      await real.close();
    }
  }, 60_000);
});

describe.skipIf(!hasDig)('limits on the DNS front-end', () => {
  it('sends TC over UDP once the not-found budget is spent (retry over TCP, where addresses are proven), then REFUSED over TCP', async () => {
    const dnsLimits = parseLimits('tiers: { anonymous: { rate: 100, burst: 100, notFoundRate: 0.001, notFoundBurst: 2 } }\n', 'dns');
    const d = await bootHierarchy({ dns: { port: 0, resolverDns: { host: '127.0.1.53', port: 0 } }, limits: dnsLimits });
    try {
      const server = d.resolverDns ?? '';
      // An unassigned +999 number per query: each denial (NODATA, PROTOCOL.md §16) draws one not-found token.
      const ask = (n: number, ...extra: string[]) => dig(server, ['NAPTR', `${n}.0.0.0.0.0.0.0.0.9.9.9.e164.mimi.arpa`, '+ignore', ...extra]);
      expect((await ask(1)).status).toBe('NOERROR');
      expect((await ask(2)).status).toBe('NOERROR');
      const limited = await ask(3);
      expect(limited.flags).toContain('tc');
      expect(limited.answer).toEqual([]);
      // Over TCP the address is proven and has budgets of its own, until they run dry too.
      expect((await ask(4, '+tcp')).status).toBe('NOERROR');
      expect((await ask(5, '+tcp')).status).toBe('NOERROR');
      expect((await ask(6, '+tcp')).status).toBe('REFUSED');
    } finally {
      await d.close();
    }
  });
});
