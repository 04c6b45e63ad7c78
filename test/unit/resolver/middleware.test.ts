/**
 * Each policy of the resolver chain with a fake `next` (CoreDNS tests its
 * plugins that way), and the walk over a scripted in-memory transport: no
 * socket anywhere.
 */
import { describe, expect, it } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { MimiError } from '../../../src/errors.ts';
import type { Context, Outcome, Question, Resolve } from '../../../src/resolver/chain.ts';
import { clientLimits, mspFilter, observe, requireSecure } from '../../../src/resolver/middleware.ts';
import { ClientLimiter } from '../../../src/limits/rate-limit.ts';
import { Resolver } from '../../../src/resolver/resolver.ts';
import type { LookupQuestion, LookupReply, Transport, ZoneFetch } from '../../../src/resolver/transport.ts';
import { RootSnapshot } from '../../../src/resolver/root-copy.ts';
import { parseLimits } from '../../../src/zone/limits-file.ts';
import { loadZoneDir } from '../../../src/zone/load.ts';
import type { RootZone } from '../../../src/zone/normalise.ts';

const zones = await loadZoneDir('test/fixtures/hierarchy');
const root = zones.find((z) => z.zone.role === 'root')?.zone as RootZone;
const snapshot = new RootSnapshot(root, '"1"');

const question = (over: Partial<Question> = {}): Question => ({ csi: parseCsi('+447700900123'), federation: { mode: 'default' }, ...over });
const context = (over: Partial<Context> = {}): Context => ({ deadline: Date.now() + 10_000, network: true, ...over });
const outcome = (mappings: { msp: string }[], secure = true): Outcome => ({
  cached: false,
  resolution: {
    csi: 'tel:+447700900123',
    mappings: mappings.map((m) => ({ ...m, preference: 1, sources: ['dp-uk'] })),
    expiresAt: Date.now() + 60_000,
    path: ['dp-uk'],
    stale: false,
    incomplete: [],
    negativeZone: undefined,
    root: snapshot,
    secure,
    chain: [],
  },
});
const answering =
  (o: Outcome): Resolve =>
  () =>
    Promise.resolve(o);
const failing =
  (code: 'upstream_unavailable' | 'invalid_request'): Resolve =>
  () =>
    Promise.reject(new MimiError(code, 'scripted'));

describe('clientLimits', () => {
  const limits = parseLimits('tiers: { anonymous: { rate: 100, burst: 3, notFoundRate: 0.001, notFoundBurst: 2 } }\n', 'l');
  const client = { identity: 'addr:192.0.2.1', tier: 'anonymous' };

  it('refuses past the burst before next runs', async () => {
    const limiter = new ClientLimiter(limits);
    let calls = 0;
    const chain = clientLimits(
      () => limiter,
      () => 0,
    )(() => {
      calls += 1;
      return Promise.resolve(outcome([{ msp: 'chat-a' }]));
    });
    for (let i = 0; i < 3; i++) await chain(question(), context({ client }));
    await expect(chain(question(), context({ client }))).rejects.toMatchObject({ code: 'rate_limited' });
    expect(calls).toBe(3);
  });

  it('keeps the not-found token for not_found and for a failure, gives it back for a found answer', async () => {
    const limiter = new ClientLimiter(limits);
    const now = (): number => 0;
    await clientLimits(() => limiter, now)(answering(outcome([{ msp: 'chat-a' }])))(question(), context({ client }));
    expect(limiter.notFoundTokens(client, 0)).toBe(2);
    await clientLimits(() => limiter, now)(answering(outcome([])))(question(), context({ client }));
    expect(limiter.notFoundTokens(client, 0)).toBe(1);
    await expect(clientLimits(() => limiter, now)(failing('upstream_unavailable'))(question(), context({ client }))).rejects.toMatchObject({
      code: 'upstream_unavailable',
    });
    expect(limiter.notFoundTokens(client, 0)).toBe(0);
  });

  it('counts a mapping the MSP filter drops as not found', async () => {
    const limiter = new ClientLimiter(limits);
    await clientLimits(
      () => limiter,
      () => 0,
    )(answering(outcome([{ msp: 'chat-a' }])))(question({ msps: ['chat-b'] }), context({ client }));
    expect(limiter.notFoundTokens(client, 0)).toBe(1);
  });

  it('lets a question without a client through untouched', async () => {
    await expect(
      clientLimits(
        () => new ClientLimiter(limits),
        () => 0,
      )(answering(outcome([])))(question(), context()),
    ).resolves.toBeDefined();
  });
});

describe('mspFilter, requireSecure and observe', () => {
  it('refuses an MSP outside the registry before next runs', async () => {
    let ran = false;
    const next: Resolve = () => {
      ran = true;
      return Promise.resolve(outcome([]));
    };
    await expect(mspFilter(() => Promise.resolve(snapshot))(next)(question({ msps: ['chat-zz'] }), context())).rejects.toMatchObject({
      code: 'invalid_request',
    });
    expect(ran).toBe(false);
    await expect(mspFilter(() => Promise.resolve(snapshot))(next)(question({ msps: ['chat-a'] }), context())).resolves.toBeDefined();
  });

  it('refuses an insecure answer as bogus', async () => {
    await expect(requireSecure(answering(outcome([{ msp: 'chat-a' }], false)))(question(), context())).rejects.toMatchObject({ code: 'bogus' });
    await expect(requireSecure(answering(outcome([{ msp: 'chat-a' }], true)))(question(), context())).resolves.toBeDefined();
  });

  it('reports found, not_found and error codes', async () => {
    const seen: string[] = [];
    const observer = { outcome: (o: string) => seen.push(o), cache: () => undefined, upstream: () => undefined };
    await observe(observer)(answering(outcome([{ msp: 'chat-a' }])))(question(), context());
    await observe(observer)(answering(outcome([{ msp: 'chat-a' }])))(question({ msps: ['chat-b'] }), context());
    await observe(observer)(failing('invalid_request'))(question(), context()).catch(() => undefined);
    expect(seen).toEqual(['found', 'not_found', 'invalid_request']);
  });
});

/** A transport that answers from a script, counting what it was asked: the walk with no socket. */
class ScriptedTransport implements Transport {
  readonly asked: string[] = [];
  constructor(readonly script: (endpoint: string, question: LookupQuestion) => LookupReply['response']) {}
  lookup(endpoint: string, question: LookupQuestion): Promise<LookupReply> {
    this.asked.push(endpoint);
    return Promise.resolve({ response: this.script(endpoint, question), jws: undefined });
  }
  fetchZone(): Promise<ZoneFetch> {
    return Promise.resolve({ status: 'changed', zone: root, jws: undefined, etag: '"1"' });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('the walk over a scripted transport', () => {
  const endpointOf = (id: string): string => root.dps.find((d) => d.id === id)?.endpoints[0] ?? '';

  it('follows a referral, caches it for the referring provider, and asks the referred DP', async () => {
    const transport = new ScriptedTransport((endpoint, q) => {
      const csi = 'csi' in q ? q.csi : '';
      if (endpoint === endpointOf('dp-nanp'))
        return { kind: 'referral', dp: 'dp-nanp', zone: 'e164:1202', ttl: 3600, providers: [{ id: 'dp-dc', endpoints: ['http://203.0.113.9:1'] }] };
      return { kind: 'answer', dp: 'dp-dc', serial: 1, ttl: 300, mappings: [{ csi, msp: 'chat-a', preference: 1 }] };
    });
    const resolver = new Resolver({ rootHints: root.endpoints, transport });
    const first = await resolver.resolve({ csi: '+12025550123' });
    expect(first).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
    // Registry endpoints, not the referral's glue (PROTOCOL.md §16).
    expect(transport.asked).toEqual([endpointOf('dp-nanp'), endpointOf('dp-dc')]);
    const second = await resolver.resolve({ csi: '+12025550124' });
    expect(second).toMatchObject({ status: 'found', path: ['dp-dc'] });
    expect(transport.asked.slice(2)).toEqual([endpointOf('dp-dc')]);
  });

  it('fails over to the next replica of a provider', async () => {
    const dc = root.dps.find((d) => d.id === 'dp-dc')?.endpoints ?? [];
    const transport = new ScriptedTransport((endpoint, q) => {
      if (endpoint === endpointOf('dp-nanp'))
        return { kind: 'referral', dp: 'dp-nanp', zone: 'e164:1202', ttl: 3600, providers: [{ id: 'dp-dc', endpoints: [...dc] }] };
      if (endpoint === dc[0]) throw new MimiError('upstream_unavailable', 'scripted: the first replica is down');
      return { kind: 'answer', dp: 'dp-dc', serial: 1, ttl: 300, mappings: [{ csi: 'csi' in q ? q.csi : '', msp: 'chat-a', preference: 1 }] };
    });
    const resolver = new Resolver({ rootHints: root.endpoints, transport });
    await expect(resolver.resolve({ csi: '+12025550123' })).resolves.toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
    expect(transport.asked).toEqual([endpointOf('dp-nanp'), dc[0], dc[1]]);
  });

  it('ends with upstream_unavailable when every replica of the only provider fails', async () => {
    const transport = new ScriptedTransport(() => {
      throw new MimiError('upstream_unavailable', 'scripted failure');
    });
    const resolver = new Resolver({ rootHints: root.endpoints, transport });
    await expect(resolver.resolve({ csi: '+12025550123' })).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect(transport.asked).toEqual([endpointOf('dp-nanp')]);
  });
});
