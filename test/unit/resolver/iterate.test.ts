/**
 * The iterative walk (PROTOCOL.md §4) over an in-memory scripted transport:
 * no socket, every upstream question and answer visible. The root refers to a
 * country DP, which refers to a city DP holding the mapping; a referral's
 * cached cut is reused; an unreachable replica is skipped for the next
 * replica; an endless chain of referrals stops at the referral limit.
 */
import { describe, expect, it } from 'vitest';
import { Resolver } from '../../../src/resolver/resolver.ts';
import type { LookupQuestion, LookupReply, LookupResult, Transport, ZoneFetch } from '../../../src/resolver/transport.ts';
import { MimiError } from '../../../src/errors.ts';
import { parseZoneText } from '../../../src/zone/normalise.ts';

const ROOT = parseZoneText(
  `role: root
id: root
serial: 5
ttl: 3600
negativeTtl: 60
endpoints: [ "http://root.test" ]
msps: [ { id: chat-a, name: "Chat A", bit: 0 }, { id: chat-b, name: "Chat B", bit: 1 } ]
dps:
  - { id: dp-nanp, endpoints: [ "http://nanp.test" ] }
  - { id: dp-dc, endpoints: [ "http://dc-1.test", "http://dc-2.test" ] }
delegations: [ { zone: "e164:1", providers: [ dp-nanp ] } ]
`,
  'root.yaml',
);

/** Answers by endpoint; records every question asked. */
class ScriptedTransport implements Transport {
  readonly asked: { endpoint: string; question: LookupQuestion }[] = [];
  zoneFetches = 0;
  constructor(private readonly script: Readonly<Record<string, (question: LookupQuestion) => LookupResult>>) {}

  lookup(endpoint: string, question: LookupQuestion): Promise<LookupReply> {
    this.asked.push({ endpoint, question });
    const answer = this.script[endpoint];
    if (answer === undefined) return Promise.reject(new MimiError('upstream_unavailable', `${endpoint}: unreachable`));
    return Promise.resolve({ response: answer(question), jws: undefined });
  }

  fetchZone(): Promise<ZoneFetch> {
    this.zoneFetches += 1;
    return Promise.resolve({ status: 'changed', zone: JSON.parse(JSON.stringify(ROOT)) as unknown, jws: undefined, etag: '"5"' });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const referralToDc: LookupResult = {
  kind: 'referral',
  dp: 'dp-nanp',
  zone: 'e164:1202',
  ttl: 3600,
  providers: [{ id: 'dp-dc', endpoints: ['http://dc-1.test', 'http://dc-2.test'] }],
};
const rootReferral: LookupResult = { kind: 'referral', dp: 'root', zone: 'e164:1', ttl: 3600, providers: [{ id: 'dp-nanp', endpoints: ['http://nanp.test'] }] };
const dcAnswer = (question: LookupQuestion): LookupResult => ({
  kind: 'answer',
  dp: 'dp-dc',
  serial: 7,
  ttl: 600,
  mappings: [{ csi: 'csi' in question ? question.csi : '', msp: 'chat-a', preference: 1, ttl: 600, created: '2026-01-01T00:00:00Z' }],
});

function resolverOver(transport: Transport, maxReferrals?: number): Resolver {
  let now = Date.parse('2026-12-01T00:00:00Z');
  return new Resolver({ rootHints: ['http://root.test'], transport, now: () => (now += 1), ...(maxReferrals !== undefined ? { maxReferrals } : {}) });
}

describe('the iterative walk over a scripted transport', () => {
  it('follows root → country → city and answers with the city DP’s mapping', async () => {
    const transport = new ScriptedTransport({ 'http://root.test': () => rootReferral, 'http://nanp.test': () => referralToDc, 'http://dc-1.test': dcAnswer });
    const resolver = resolverOver(transport);
    const answer = await resolver.resolve({ csi: '+12025550123' });
    expect(answer).toMatchObject({ csi: 'tel:+12025550123', status: 'found', mappings: [{ msp: 'chat-a', preference: 1 }] });
    // The root zone copy already holds the delegation to dp-nanp: the walk starts there, not at the root.
    expect(transport.asked.map((a) => a.endpoint)).toEqual(['http://nanp.test', 'http://dc-1.test']);
    expect(transport.asked.every((a) => 'csi' in a.question && a.question.csi === 'tel:+12025550123')).toBe(true);
    expect(transport.zoneFetches).toBe(1);
  });

  it('reuses the cached referral for a sibling number: only the city DP is asked', async () => {
    const transport = new ScriptedTransport({ 'http://nanp.test': () => referralToDc, 'http://dc-1.test': dcAnswer });
    const resolver = resolverOver(transport);
    await resolver.resolve({ csi: '+12025550123' });
    transport.asked.length = 0;
    expect(await resolver.resolve({ csi: '+12025550124' })).toMatchObject({ status: 'found' });
    expect(transport.asked.map((a) => a.endpoint)).toEqual(['http://dc-1.test']);
  });

  it('moves to the next replica when one is unreachable', async () => {
    const transport = new ScriptedTransport({ 'http://nanp.test': () => referralToDc, 'http://dc-2.test': dcAnswer });
    const resolver = resolverOver(transport);
    expect(await resolver.resolve({ csi: '+12025550123' })).toMatchObject({ status: 'found' });
    expect(transport.asked.map((a) => a.endpoint)).toEqual(['http://nanp.test', 'http://dc-1.test', 'http://dc-2.test']);
  });

  it('asks a replica that just failed after the others, so a host cut off costs its timeout once, not on every resolution', async () => {
    const transport = new ScriptedTransport({ 'http://nanp.test': () => referralToDc, 'http://dc-2.test': dcAnswer });
    const resolver = resolverOver(transport);
    expect(await resolver.resolve({ csi: '+12025550123' })).toMatchObject({ status: 'found' });
    transport.asked.length = 0;
    expect(await resolver.resolve({ csi: '+12025550124' })).toMatchObject({ status: 'found' });
    expect(transport.asked.map((a) => a.endpoint)).toEqual(['http://dc-2.test']);
  });

  it('stops an endless chain of referrals at the referral limit with referral_loop', async () => {
    // dp-dc refers back to a deeper zone held by dp-nanp, which refers to dp-dc again, and so on.
    let depth = 4;
    const deeper = (dp: string, to: { id: string; endpoints: string[] }): LookupResult => {
      depth += 1;
      return { kind: 'referral', dp, zone: `e164:1202555${'0'.repeat(Math.min(depth - 4, 4))}`.slice(0, 16), ttl: 60, providers: [to] };
    };
    const transport = new ScriptedTransport({
      'http://nanp.test': () => deeper('dp-nanp', { id: 'dp-dc', endpoints: ['http://dc-1.test'] }),
      'http://dc-1.test': () => deeper('dp-dc', { id: 'dp-nanp', endpoints: ['http://nanp.test'] }),
    });
    const resolver = resolverOver(transport, 3);
    await expect(resolver.resolve({ csi: '+12025550000' })).rejects.toMatchObject({ code: 'referral_loop' });
    expect(transport.asked.length).toBeLessThanOrEqual(4);
  });
});
