/**
 * Scripted misbehaving DPs (Deckard-style): out of bailiwick, looping, too deep,
 * hanging, lame and garbled. The resolver must answer, fail cleanly, or ignore them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootHierarchy, inlineZone, scriptedDp, type ScriptedServer, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
let slowH: TestHierarchy;
const s: Record<string, ScriptedServer> = {};

const digits = (csi?: string): string => (csi ?? '').replace('tel:+', '');

beforeAll(async () => {
  s.good = await scriptedDp((b) => [200, { kind: 'answer', dp: 'dp-good', serial: 1, ttl: 300, mappings: [{ csi: b.csi, msp: 'chat-a', preference: 1 }] }]);
  s.outside = await scriptedDp(() => [200, { kind: 'answer', dp: 'dp-x', serial: 1, ttl: 300, mappings: [] }]);
  s.evil = await scriptedDp(() => [200, { kind: 'referral', dp: 'dp-evil', zone: 'e164:44', ttl: 300, providers: [{ id: 'dp-x', endpoints: [s.outside?.url] }] }]);
  s.sideways = await scriptedDp(() => [200, { kind: 'referral', dp: 'dp-sideways', zone: 'e164:4477009001', ttl: 300, providers: [{ id: 'dp-x', endpoints: [s.outside?.url] }] }]);
  s.loop1 = await scriptedDp(() => [200, { kind: 'referral', dp: 'dp-loop1', zone: 'e164:44770090021', ttl: 300, providers: [{ id: 'dp-loop2', endpoints: [s.loop2?.url] }] }]);
  s.loop2 = await scriptedDp(() => [200, { kind: 'referral', dp: 'dp-loop2', zone: 'e164:447700900212', ttl: 300, providers: [{ id: 'dp-loop1', endpoints: [s.loop1?.url] }] }]);
  s.deep = await scriptedDp((b) => {
    const n = s.deep?.requests.length ?? 0;
    const id = n === 1 ? 'dp-deep' : `dp-deep${n - 1}`;
    return [200, { kind: 'referral', dp: id, zone: `e164:${digits(b.csi).slice(0, 3 + n)}`, ttl: 300, providers: [{ id: `dp-deep${n}`, endpoints: [s.deep?.url] }] }];
  });
  s.hang = await scriptedDp(() => undefined);
  s.lame = await scriptedDp(() => [404, { type: 'about:blank', status: 404, code: 'not_authoritative' }]);
  s.garbage = await scriptedDp(() => [200, { kind: 'answer', dp: 'dp-garbage' }]);
  s.liar = await scriptedDp(() => [200, { kind: 'answer', dp: 'dp-liar', serial: 1, ttl: 300, mappings: [{ csi: 'tel:+447700900123', msp: 'chat-a', preference: 1 }, { csi: 'tel:+447700900701', msp: 'chat-zz', preference: 1 }] }]);

  const root = inlineZone(`
role: root
id: root
serial: 1
ttl: 3600
negativeTtl: 60
endpoints: [ "http://127.0.0.1:1" ]
msps: [ { id: chat-a, name: A, bit: 0 } ]
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
delegations:
  - { zone: "e164:4477009001", providers: [ dp-good, dp-evil ] }
  - { zone: "e164:44770090019", providers: [ dp-sideways ] }
  - { zone: "e164:4477009002", providers: [ dp-loop1 ] }
  - { zone: "e164:447", providers: [ dp-deep ] }
  - { zone: "e164:4477009004", providers: [ dp-hang ] }
  - { zone: "e164:4477009005", providers: [ dp-lame ] }
  - { zone: "e164:4477009006", providers: [ dp-garbage ] }
  - { zone: "e164:4477009007", providers: [ dp-liar ] }
`);
  h = await bootHierarchy({ zones: [root], resolver: { replicaTimeoutMs: 300, resolutionTimeoutMs: 5_000 } });
  slowH = await bootHierarchy({ zones: [root], resolver: { replicaTimeoutMs: 5_000, resolutionTimeoutMs: 400 } });
});

afterAll(async () => {
  await h.close();
  await slowH.close();
  await Promise.all(Object.values(s).map((server) => server.close()));
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
