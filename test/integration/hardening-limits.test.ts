/**
 * The budgets of PROTOCOL.md §16 that a walker meets: anonymous clients limited
 * per network prefix, the not-found budget reserved before the walk, failures
 * and `local` misses drawing from it, DPs defending their own HTTP lookups (a
 * resolver known by its client certificate, anyone else by prefix) and their
 * DNS front-ends (response-rate limiting with TC slips over UDP, REFUSED over TCP).
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLimits } from '../../src/zone/limits-file.ts';
import { loadZoneDir, type LoadedZone } from '../../src/zone/load.ts';
import { bootHierarchy, fixtureZones, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

const limits = parseLimits('tiers: { anonymous: { rate: 1000, burst: 1000, notFoundRate: 0.001, notFoundBurst: 3 } }\n', 'limits.yaml');
const roomy = parseLimits('tiers: { anonymous: { rate: 100000, burst: 100000, notFoundRate: 100000, notFoundBurst: 100000 } }\n', 'servers.yaml');

const agents: Agent[] = [];
const from = (address: string): Agent => {
  const agent = new Agent({ localAddress: address });
  agents.push(agent);
  return agent;
};

async function ask(url: string, body: unknown, agent: Agent): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(url, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

let h: TestHierarchy;
let slow: ScriptedServer;
let dead: ScriptedServer;
const pendingReplies: (() => void)[] = [];

beforeAll(async () => {
  // +33 1 99 00 xx xx (French drama numbers): a DP that answers not_found only when the test lets it; +33 1 99 01: one that always fails.
  slow = await scriptedDp(() => [200, { kind: 'not_found', dp: 'dp-slow', zone: 'e164:3319900', ttl: 60 }]);
  dead = await scriptedDp(() => [500, { type: 'about:blank', status: 500, code: 'internal' }]);
  const zones = await fixtureZones((root) => ({
    ...root,
    dps: [...root.dps, { id: 'dp-slow', endpoints: [slow.url] }, { id: 'dp-dead', endpoints: [dead.url] }],
    delegations: [...root.delegations, { zone: 'e164:3319900', providers: ['dp-slow'] }, { zone: 'e164:3319901', providers: ['dp-dead'] }],
  }));
  h = await bootHierarchy({ zones, limits, serverLimits: roomy, realClock: true, dns: { port: 0, resolverDns: { host: '127.0.2.53', port: 0 } } });
});
afterAll(async () => {
  for (const release of pendingReplies) release();
  await h.close();
  await slow.close();
  await dead.close();
  await Promise.all(agents.map((a) => a.close()));
});

const resolve = (body: unknown, agent: Agent) => ask(`${h.resolverUrl}/v1/resolve`, body, agent);

describe("the resolver's budgets (PROTOCOL.md §16)", () => {
  it('limits anonymous clients per /24: two addresses of one prefix share one not-found budget, another prefix has its own', async () => {
    const a = from('127.0.40.1');
    const b = from('127.0.40.2');
    const c = from('127.0.41.1');
    for (const n of ['+447700900911', '+447700900912', '+447700900913'])
      expect((await resolve({ csi: n }, n.endsWith('2') ? b : a)).json.status).toBe('not_found');
    expect((await resolve({ csi: '+447700900123' }, b)).status).toBe(429);
    expect((await resolve({ csi: '+447700900123' }, a)).status).toBe(429);
    expect((await resolve({ csi: '+447700900123' }, c)).json.status).toBe('found');
  });

  it('reserves the not-found token before the walk: 20 concurrent misses cannot overdraw a budget of 3', async () => {
    const me = from('127.0.42.1');
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => resolve({ csi: `+33199000${String(100 + i)}` }, me)));
    const notFound = answers.filter((r) => r.json.status === 'not_found').length;
    expect(notFound).toBeLessThanOrEqual(3);
    expect(answers.filter((r) => r.status === 429)).toHaveLength(20 - notFound);
  });

  it('gives the token back for a found answer', async () => {
    const me = from('127.0.43.1');
    for (let i = 0; i < 20; i++) expect((await resolve({ csi: '+447700900123' }, me)).json.status).toBe('found');
    expect((await resolve({ csi: '+447700900914' }, me)).json.status).toBe('not_found');
  });

  it('charges failed resolutions like not_found: upstream_unavailable costs a not-found token', async () => {
    const me = from('127.0.44.1');
    for (let i = 0; i < 3; i++) expect((await resolve({ csi: `+33199010${String(100 + i)}` }, me)).json.code).toBe('upstream_unavailable');
    const refused = await resolve({ csi: '+447700900123' }, me);
    expect(refused.status).toBe(429);
  });

  it('charges a local-mode miss (probing the cache costs as much as walking)', async () => {
    const me = from('127.0.45.1');
    for (let i = 0; i < 3; i++) expect((await resolve({ csi: `+44770090092${i}`, federation: { mode: 'local' } }, me)).json.code).toBe('not_cached');
    expect((await resolve({ csi: '+447700900123', federation: { mode: 'local' } }, me)).status).toBe(429);
  });
});

describe('a DP defends its own lookups (PROTOCOL.md §16)', () => {
  it('runs a walk sent straight to a DP dry, as the same walk through a resolver would', async () => {
    const d = await bootHierarchy({ limits, realClock: true });
    try {
      const walker = from('127.0.46.1');
      const codes: number[] = [];
      for (let i = 0; i < 200 && codes.filter((c) => c === 429).length < 5; i++) {
        codes.push((await ask(`${d.servers['dp-uk']?.[0]}/v1/lookup`, { csi: `+4477009009${String(i).padStart(2, '0')}` }, walker)).status);
      }
      expect(codes.filter((c) => c === 200).length).toBeLessThanOrEqual(3);
      expect(codes.at(-1)).toBe(429);
      // Another network is not affected.
      expect((await ask(`${d.servers['dp-uk']?.[0]}/v1/lookup`, { csi: '+447700900123' }, from('127.0.47.1'))).status).toBe(200);
    } finally {
      await d.close();
    }
  });

  it('knows a resolver by its client certificate: its perResolver budget, not the anonymous one', async () => {
    const pkiDir = await mkdtemp(join(tmpdir(), 'mimi-pki-'));
    const zones = JSON.parse(JSON.stringify(await loadZoneDir('test/fixtures/hierarchy')).replaceAll('"http://', '"https://')) as LoadedZone[];
    // The resolver's clients are roomy; the DPs' anonymous tier allows 3 denials.
    const d = await bootHierarchy({ zones, limits: roomy, serverLimits: limits, tls: { pkiDir }, realClock: true });
    const ca = await readFile(join(pkiDir, 'ca.pem'), 'utf8');
    const client = new Agent({ connect: { ca } });
    agents.push(client);
    try {
      const post = async (url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
        const res = await request(url, { method: 'POST', dispatcher: client, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
      };
      // 30 denials walked through the resolver, which presents its certificate to dp-uk: far past the anonymous 3.
      for (let i = 0; i < 30; i++)
        expect((await post(`${d.resolverUrl}/v1/resolve`, { csi: `+4477009009${String(i).padStart(2, '0')}` })).json.status).toBe('not_found');
      // The same walk sent straight to dp-uk without a certificate runs dry after 3.
      const direct: number[] = [];
      for (let i = 0; i < 6; i++) direct.push((await post(`${d.servers['dp-uk']?.[0]}/v1/lookup`, { csi: `+4477009009${String(50 + i)}` })).status);
      expect(direct).toEqual([200, 200, 200, 429, 429, 429]);
    } finally {
      await d.close();
    }
  });
});

/** A NAPTR query for a number under the fixture's +44 zone. */
function query(id: number, digits: string): Buffer {
  const name = `${[...digits].reverse().join('.')}.e164.mimi.arpa`;
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'NAPTR', name }] });
}

describe("a DP's DNS front-end limits responses per prefix (PROTOCOL.md §16)", () => {
  it('answers at most its rate over UDP, every second refused response truncated (TC) and the rest dropped', async () => {
    const d = await bootHierarchy({ limits, realClock: true, dns: { port: 0, resolverDns: { host: '127.0.2.54', port: 0 } } });
    const socket = createSocket('udp4');
    try {
      const [address, port] = (d.dns['dp-uk']?.[0] ?? '').split(':');
      const replies: dnsPacket.Packet[] = [];
      socket.on('message', (msg) => replies.push(dnsPacket.decode(msg)));
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      for (let i = 0; i < 200; i++) socket.send(query(i, `4477009009${String(i % 100).padStart(2, '0')}`), Number(port), address);
      for (let waited = 0; waited < 2000 && replies.length < 110; waited += 50) await new Promise((r) => setTimeout(r, 50));
      const full = replies.filter((r) => ((r.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) === 0);
      const truncated = replies.filter((r) => ((r.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) !== 0);
      // 20 per second, plus what refilled while the burst went out (a loaded CI machine may take a second or two).
      expect(full.length).toBeGreaterThanOrEqual(20);
      expect(full.length).toBeLessThanOrEqual(60);
      expect(truncated.length).toBeGreaterThanOrEqual(60); // about half of the 140 to 180 refused
      expect(truncated.length).toBeLessThanOrEqual(100);
      expect(replies.length).toBeLessThan(200); // the rest were dropped
    } finally {
      socket.close();
      await d.close();
    }
  });

  it('answers REFUSED over TCP past the rate', async () => {
    const d = await bootHierarchy({ limits, realClock: true, dns: { port: 0, resolverDns: { host: '127.0.2.55', port: 0 } } });
    try {
      const [address, port] = (d.dns['dp-uk']?.[0] ?? '').split(':');
      const socket = connect(Number(port), address);
      const rcodes: string[] = [];
      let buffered = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          const rcode = (dnsPacket.decode(buffered.subarray(2, 2 + buffered.readUInt16BE(0))).flags ?? 0) & 0xf;
          rcodes.push(rcode === 0 ? 'NOERROR' : rcode === 5 ? 'REFUSED' : String(rcode));
          buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
        }
      });
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      for (let i = 0; i < 100; i++)
        socket.write(
          dnsPacket.streamEncode({ type: 'query', id: i, flags: 0, questions: [{ type: 'NAPTR', name: '3.2.1.0.0.9.0.0.7.7.4.4.e164.mimi.arpa' }] }),
        );
      for (let waited = 0; waited < 5000 && rcodes.length < 100; waited += 50) await new Promise((r) => setTimeout(r, 50));
      socket.destroy();
      expect(rcodes).toHaveLength(100);
      expect(rcodes.filter((r) => r === 'NOERROR').length).toBeLessThanOrEqual(60); // 20, plus refills on a slow machine
      expect(rcodes.filter((r) => r === 'REFUSED').length).toBeGreaterThanOrEqual(40);
    } finally {
      await d.close();
    }
  });
});
