/**
 * Scripted misbehaving DPs (Deckard-style): out of bailiwick, looping, too deep,
 * hanging, lame and garbled. The resolver must answer, fail cleanly, or ignore them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootHierarchy, inlineZone, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
let slowH: TestHierarchy;
const s: Record<string, ScriptedServer> = {};
const victims: ScriptedServer[] = [];
const victimRequests = (): number => victims.reduce((n, v) => n + v.requests.length, 0);

const digits = (csi?: string): string => (csi ?? '').replace('tel:+', '');

beforeAll(async () => {
  s.good = await scriptedDp((b) => [200, { kind: 'answer', dp: 'dp-good', serial: 1, ttl: 300, mappings: [{ csi: b.csi, msp: 'chat-a', preference: 1 }] }]);
  s.outside = await scriptedDp(() => [200, { kind: 'answer', dp: 'dp-x', serial: 1, ttl: 300, mappings: [] }]);
  s.evil = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-evil', zone: 'e164:44', ttl: 300, providers: [{ id: 'dp-x', endpoints: [s.outside?.url] }] },
  ]);
  s.sideways = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-sideways', zone: 'e164:4477009001', ttl: 300, providers: [{ id: 'dp-x', endpoints: [s.outside?.url] }] },
  ]);
  s.loop1 = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-loop1', zone: 'e164:44770090021', ttl: 300, providers: [{ id: 'dp-loop2', endpoints: [s.loop2?.url] }] },
  ]);
  s.loop2 = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-loop2', zone: 'e164:447700900212', ttl: 300, providers: [{ id: 'dp-loop1', endpoints: [s.loop1?.url] }] },
  ]);
  s.deep = await scriptedDp((b) => {
    const n = s.deep?.requests.length ?? 0;
    const id = n === 1 ? 'dp-deep' : `dp-deep${n - 1}`;
    return [
      200,
      { kind: 'referral', dp: id, zone: `e164:${digits(b.csi).slice(0, 3 + n)}`, ttl: 300, providers: [{ id: `dp-deep${n}`, endpoints: [s.deep?.url] }] },
    ];
  });
  s.hang = await scriptedDp(() => undefined);
  s.lame = await scriptedDp(() => [404, { type: 'about:blank', status: 404, code: 'not_authoritative' }]);
  s.garbage = await scriptedDp(() => [200, { kind: 'answer', dp: 'dp-garbage' }]);
  s.liar = await scriptedDp(() => [
    200,
    {
      kind: 'answer',
      dp: 'dp-liar',
      serial: 1,
      ttl: 300,
      mappings: [
        { csi: 'tel:+447700900123', msp: 'chat-a', preference: 1 },
        { csi: 'tel:+447700900701', msp: 'chat-zz', preference: 1 },
      ],
    },
  ]);
  // PROTOCOL.md §16 attackers: NXNS-style fan-out, a spoofed provider id, a sub-zone hijack by a co-provider, a loop on one branch.
  for (let i = 0; i < 16; i++) victims.push(await scriptedDp(() => [500, { type: 'about:blank', status: 500, code: 'internal' }]));
  const fanout = (id: string, zone: string, ids: string[]) =>
    scriptedDp(() => [200, { kind: 'referral', dp: id, zone, ttl: 300, providers: ids.map((p) => ({ id: p, endpoints: victims.map((v) => v.url) })) }]);
  s.fan = await fanout(
    'dp-fan',
    'e164:44770090091',
    Array.from({ length: 32 }, (_, i) => `dp-v${i}`),
  );
  s.fanUnknown = await fanout(
    'dp-fan-unknown',
    'e164:44770090092',
    Array.from({ length: 32 }, (_, i) => `dp-unlisted${i}`),
  );
  s.collector = await scriptedDp(() => [
    200,
    { kind: 'answer', dp: 'dp-good', serial: 1, ttl: 300, mappings: [{ csi: 'tel:+447700900931', msp: 'chat-b', preference: 1 }] },
  ]);
  s.spoof = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-spoof', zone: 'e164:447700900931', ttl: 300, providers: [{ id: 'dp-good', endpoints: [s.collector?.url] }] },
  ]);
  s.hijacked = await scriptedDp((b) => [
    200,
    { kind: 'answer', dp: 'dp-hijacked', serial: 1, ttl: 300, mappings: [{ csi: b.csi, msp: 'chat-b', preference: 1 }] },
  ]);
  s.hijack = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-hijack', zone: 'e164:44770090081', ttl: 300, providers: [{ id: 'dp-hijacked', endpoints: [s.hijacked?.url] }] },
  ]);
  s.loop3 = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-loop3', zone: 'e164:447700900951', ttl: 300, providers: [{ id: 'dp-loop4', endpoints: [s.loop4?.url] }] },
  ]);
  s.loop4 = await scriptedDp(() => [
    200,
    { kind: 'referral', dp: 'dp-loop4', zone: 'e164:4477009009512', ttl: 300, providers: [{ id: 'dp-loop3', endpoints: [s.loop3?.url] }] },
  ]);
  const victimEndpoints = `[ ${victims.map((v) => `"${v.url}"`).join(', ')} ]`;

  const root = inlineZone(`
role: root
id: root
serial: 1
ttl: 3600
negativeTtl: 60
endpoints: [ "http://127.0.0.1:1" ]
msps: [ { id: chat-a, name: A, bit: 0 }, { id: chat-b, name: B, bit: 1 } ]
dps:
  - { id: dp-good, endpoints: [ "${s.good.url}" ] }
  - { id: dp-evil, endpoints: [ "${s.evil.url}" ] }
  - { id: dp-sideways, endpoints: [ "${s.sideways.url}" ] }
  - { id: dp-loop1, endpoints: [ "${s.loop1.url}" ] }
  - { id: dp-deep, endpoints: [ "${s.deep.url}" ] }
  - { id: dp-hang, endpoints: [ "${s.hang.url}", "${s.hang.url}" ] }
  - { id: dp-lame, endpoints: [ "${s.lame.url}" ] }
  - { id: dp-garbage, endpoints: [ "${s.garbage.url}" ] }
  - { id: dp-liar, endpoints: [ "${s.liar.url}" ] }
  - { id: dp-loop2, endpoints: [ "${s.loop2.url}" ] }
${Array.from({ length: 9 }, (_, i) => `  - { id: dp-deep${i + 1}, endpoints: [ "${s.deep?.url}" ] }`).join('\n')}
  - { id: dp-fan, endpoints: [ "${s.fan.url}" ] }
  - { id: dp-fan-unknown, endpoints: [ "${s.fanUnknown.url}" ] }
${Array.from({ length: 32 }, (_, i) => `  - { id: dp-v${i}, endpoints: ${victimEndpoints} }`).join('\n')}
  - { id: dp-spoof, endpoints: [ "${s.spoof.url}" ] }
  - { id: dp-hijack, endpoints: [ "${s.hijack.url}" ] }
  - { id: dp-hijacked, endpoints: [ "${s.hijacked.url}" ] }
  - { id: dp-loop3, endpoints: [ "${s.loop3.url}" ] }
  - { id: dp-loop4, endpoints: [ "${s.loop4.url}" ] }
delegations:
  - { zone: "e164:4477009001", providers: [ dp-good, dp-evil ] }
  - { zone: "e164:44770090019", providers: [ dp-sideways ] }
  - { zone: "e164:4477009002", providers: [ dp-loop1 ] }
  - { zone: "e164:447", providers: [ dp-deep ] }
  - { zone: "e164:4477009004", providers: [ dp-hang ] }
  - { zone: "e164:4477009005", providers: [ dp-lame ] }
  - { zone: "e164:4477009006", providers: [ dp-garbage ] }
  - { zone: "e164:4477009007", providers: [ dp-liar ] }
  - { zone: "e164:4477009008", providers: [ dp-good, dp-hijack ] }
  - { zone: "e164:4477009009", providers: [ dp-fan ] }
  - { zone: "e164:44770090092", providers: [ dp-fan-unknown ] }
  - { zone: "e164:44770090093", providers: [ dp-spoof ] }
  - { zone: "e164:44770090095", providers: [ dp-good, dp-loop3 ] }
`);
  h = await bootHierarchy({ zones: [root], resolver: { replicaTimeoutMs: 300, resolutionTimeoutMs: 5_000 } });
  slowH = await bootHierarchy({ zones: [root], resolver: { replicaTimeoutMs: 5_000, resolutionTimeoutMs: 400 } });
});

afterAll(async () => {
  await h.close();
  await slowH.close();
  await Promise.all([...Object.values(s), ...victims].map((server) => server.close()));
});

describe('misbehaving DPs', () => {
  it('ignores a referral out of the bailiwick, counts its sender as failed, and never follows it', async () => {
    const res = await h.resolve({ csi: '+447700900101' });
    expect(res.json).toMatchObject({ status: 'found', incomplete: ['dp-evil'], mappings: [{ msp: 'chat-a', sources: ['dp-good'] }] });
    expect(s.outside?.requests).toHaveLength(0);
    // Nor was it cached: another +44 number (Ofcom's fictional 01632 960xxx) does not go to dp-x.
    await h.resolve({ csi: '+441632960123' });
    expect(s.outside?.requests).toHaveLength(0);
  });

  it('ignores a referral to its own zone (not strictly inside)', async () => {
    const res = await h.resolve({ csi: '+447700900190' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_unavailable');
    expect(s.outside?.requests).toHaveLength(0);
  });

  it('ends a referral loop with referral_loop', async () => {
    const res = await h.resolve({ csi: '+447700900212' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('referral_loop');
  });

  it('ends a chain at the 9th referral with referral_loop', async () => {
    const res = await h.resolve({ csi: '+447700900312345' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('referral_loop');
    expect(s.deep?.requests).toHaveLength(9);
  });

  it('times out a hanging DP replica by replica, and keeps serving', async () => {
    const res = await h.resolve({ csi: '+447700900401' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_unavailable');
    expect(s.hang?.requests.length).toBe(2); // both replicas tried
    expect((await h.resolve({ csi: '+447700900101' })).json.status).toBe('found');
  });

  it('answers 504 when the whole resolution runs out of time', async () => {
    const res = await slowH.resolve({ csi: '+447700900402' });
    expect(res.status).toBe(504);
    expect(res.json.code).toBe('upstream_unavailable');
  });

  it('treats a lame delegation (not_authoritative) as a failure', async () => {
    const res = await h.resolve({ csi: '+447700900501' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_unavailable');
  });

  it('treats a malformed reply as a failure', async () => {
    const res = await h.resolve({ csi: '+447700900601' });
    expect(res.status).toBe(502);
  });

  it('drops mappings for another CSI or an MSP outside the registry', async () => {
    const res = await h.resolve({ csi: '+447700900701' });
    expect(res.json).toMatchObject({ status: 'not_found', mappings: [] });
  });
});

describe('attacks through the federation (PROTOCOL.md §16)', () => {
  it('bounds a referral fan-out (NXNS): at most 8 providers, 4 endpoints each, 32 upstream requests', async () => {
    const before = victimRequests();
    const res = await h.resolve({ csi: '+447700900911' });
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_unavailable');
    const sent = victimRequests() - before;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(8 * 4); // not 32 x 16 = 512
    // Each victim port is one endpoint: only the first 4 endpoints of a provider are ever used.
    expect(victims.slice(4).every((v) => v.requests.length === 0)).toBe(true);
  });

  it('sends nothing to providers a referral names outside the root registry', async () => {
    const before = victimRequests();
    const res = await h.resolve({ csi: '+447700900921' });
    expect(res.status).toBe(502);
    expect(victimRequests() - before).toBe(0);
  });

  it('uses the registry endpoints of a provider, not the glue of a referral that claims its id', async () => {
    const good = s.good?.requests.length ?? 0;
    const res = await h.resolve({ csi: '+447700900931' });
    expect(res.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a', sources: ['dp-good'] }] });
    expect(s.collector?.requests).toHaveLength(0);
    expect(s.good?.requests.length).toBe(good + 1);
  });

  it('keeps asking the honest provider of a shared zone after a co-provider referred a sub-zone to itself', async () => {
    const first = await h.resolve({ csi: '+447700900812' });
    expect(first.json).toMatchObject({ status: 'found' });
    expect((first.json.mappings as { msp: string; sources: string[] }[]).map((m) => [m.msp, m.sources])).toEqual([
      ['chat-a', ['dp-good']],
      ['chat-b', ['dp-hijacked']],
    ]);
    // The referral is cached for dp-hijack's branch only: dp-good is still asked for the next number of the sub-zone.
    const good = s.good?.requests.length ?? 0;
    const hijack = s.hijack?.requests.length ?? 0;
    const second = await h.resolve({ csi: '+447700900813' });
    expect((second.json.mappings as { msp: string }[]).map((m) => m.msp)).toEqual(['chat-a', 'chat-b']);
    expect(s.good?.requests.length).toBe(good + 1);
    expect(s.hijack?.requests.length).toBe(hijack); // its referral came from the cache
  });

  it('ends a looping branch only: the other provider of the zone still answers', async () => {
    const res = await h.resolve({ csi: '+447700900951234' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a', sources: ['dp-good'] }] });
    expect(res.json.incomplete).toEqual(expect.arrayContaining([expect.stringMatching(/^dp-loop/)]));
  });

  it('ignores what a DP asked directly says outside its bailiwick (all and client-selected modes)', async () => {
    const liar = await scriptedDp((b) => [
      200,
      { kind: 'answer', dp: 'dp-far', serial: 1, ttl: 300, mappings: [{ csi: b.csi, msp: 'chat-b', preference: 1, created: '1970-01-01T00:00:00Z' }] },
    ]);
    const root = inlineZone(`
role: root
id: root
serial: 1
ttl: 3600
negativeTtl: 60
endpoints: [ "http://127.0.0.1:1" ]
msps: [ { id: chat-a, name: A, bit: 0 }, { id: chat-b, name: B, bit: 1 } ]
dps:
  - { id: dp-good, endpoints: [ "${s.good?.url}" ] }
  - { id: dp-far, endpoints: [ "${liar.url}" ] }
delegations:
  - { zone: "e164:4477009001", providers: [ dp-good ] }
  - { zone: "e164:999", providers: [ dp-far ] }
`);
    const d = await bootHierarchy({ zones: [root] });
    try {
      for (const federation of [{ mode: 'all' }, { mode: 'client-selected', dps: ['dp-good', 'dp-far'] }]) {
        const res = await d.resolve({ csi: '+447700900101', federation });
        expect(res.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a', sources: ['dp-good'] }] });
        expect((res.json.mappings as unknown[]).length).toBe(1);
      }
      expect(liar.requests.length).toBe(2); // asked (the contract's "every DP"), not believed
    } finally {
      await d.close();
      await liar.close();
    }
  });
});
