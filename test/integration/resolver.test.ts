/**
 * The recursive resolver against a real root -> DP -> sub-DP hierarchy on port 0.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootDp } from '../../src/dp/root-dp.ts';
import type { RootZone } from '../../src/zone/normalise.ts';
import { parseCsi } from '../../src/csi/parse.ts';
import { ownerName } from '../../src/protocol/enum-name.ts';
import { bootHierarchy, postJson, type TestHierarchy } from './harness.ts';

let h: TestHierarchy;
beforeEach(async () => {
  h = await bootHierarchy();
});
afterEach(async () => {
  await h.close();
});

const url = (id: string, i = 0): string => h.servers[id]?.[i] ?? '';

describe('walking the tree', () => {
  it('follows root -> NANP -> DC cold, then skips NANP for another +1202 number (referral cached)', async () => {
    const cold = await h.resolve({ csi: '+1 202 555 0123' });
    expect(cold.status).toBe(200);
    expect(cold.json).toMatchObject({
      csi: 'tel:+12025550123',
      status: 'found',
      ttl: 3600,
      path: ['dp-nanp', 'dp-dc'],
      cached: false,
      mappings: [
        { msp: 'chat-b', preference: 1, sources: ['dp-dc'], created: '2026-03-01T00:00:00Z' },
        { msp: 'chat-d', preference: 2, sources: ['dp-dc'] },
      ],
    });
    const next = await h.resolve({ csi: 'tel:+12025550199' });
    expect(next.json).toMatchObject({ status: 'found', path: ['dp-dc'], cached: false });
    expect(h.lookups('dp-nanp')).toBe(1);
  });

  it('never sends a CSI to the root: the resolver works from its copy of the root zone', async () => {
    for (const csi of ['+447700900123', '+12025550123', 'bob@example.com', '+33199000000', 'x@example.net']) await h.resolve({ csi });
    expect(h.lookups('root')).toBe(0);
    expect(h.dps.get('root')?.stats.zoneFetches).toBe(1);
  });

  it('answers from the cache the second time, with the path that produced it and a shrinking TTL', async () => {
    await h.resolve({ csi: '+447700900123' });
    h.clock.advance(100);
    const again = await h.resolve({ csi: '+447700900123' });
    expect(again.json).toMatchObject({ status: 'found', path: ['dp-uk'], cached: true, ttl: 3500 });
    expect(h.lookups('dp-uk')).toBe(1);
  });

  it('uses the shortest mapping TTL', async () => {
    const res = await h.resolve({ csi: '+16135550101' });
    expect(res.json).toMatchObject({ status: 'found', ttl: 600 });
  });

  it('caches a not_found for the negative TTL, then asks again (RFC 2308)', async () => {
    const first = await h.resolve({ csi: '+12025550100' });
    expect(first.json).toMatchObject({ status: 'not_found', ttl: 60, mappings: [], cached: false });
    h.clock.advance(59);
    expect((await h.resolve({ csi: '+12025550100' })).json).toMatchObject({ status: 'not_found', ttl: 1, cached: true });
    expect(h.lookups('dp-dc')).toBe(1);
    h.clock.advance(1);
    expect((await h.resolve({ csi: '+12025550100' })).json).toMatchObject({ status: 'not_found', ttl: 60, cached: false });
    expect(h.lookups('dp-dc')).toBe(2);
  });

  it('says not_found without asking anyone when the root delegates nothing', async () => {
    const res = await h.resolve({ csi: '+33 1 99 00 00 00' });
    expect(res.json).toMatchObject({ status: 'not_found', path: [], ttl: 60 });
  });
});

describe('merging shares', () => {
  it('asks every provider of a zone and merges their shares', async () => {
    const res = await h.resolve({ csi: 'Bob@Example.COM' });
    expect(res.json).toMatchObject({
      csi: 'mailto:bob@example.com',
      status: 'found',
      path: ['dp-mail-a', 'dp-mail-b'],
      mappings: [
        { msp: 'chat-a', preference: 1, sources: ['dp-mail-a'], created: '2025-06-01T00:00:00Z' },
        { msp: 'chat-c', preference: 2, sources: ['dp-mail-b'], created: '2025-09-01T00:00:00Z' },
      ],
    });
  });

  it('keeps the older mapping where providers disagree on one MSP', async () => {
    const res = await h.resolve({ csi: 'alice@example.com' });
    expect(res.json.mappings).toEqual([
      { msp: 'chat-a', preference: 1, sources: ['dp-mail-a', 'dp-mail-b'], created: '2026-01-01T00:00:00Z' },
      { msp: 'chat-b', preference: 2, sources: ['dp-mail-b'], created: '2026-05-01T00:00:00Z' },
    ]);
  });

  it('filters MSPs before deciding the status', async () => {
    expect((await h.resolve({ csi: 'alice@example.com', msps: ['chat-b'] })).json).toMatchObject({
      status: 'found',
      mappings: [{ msp: 'chat-b' }],
    });
    const none = await h.resolve({ csi: 'alice@example.com', msps: ['chat-d'] });
    expect(none.json).toMatchObject({ status: 'not_found', mappings: [] });
    const unknown = await h.resolve({ csi: 'alice@example.com', msps: ['chat-zz'] });
    expect(unknown.status).toBe(400);
    expect(unknown.json.code).toBe('invalid_request');
  });

  it('answers compact: registry serial and the bit string', async () => {
    const res = await h.resolve({ csi: 'bob@example.com', format: 'compact' });
    expect(res.json).toEqual({ csi: 'mailto:bob@example.com', status: 'found', ttl: 3600, registry: 2026112301, bits: '0005' });
    const e = await h.resolve({ csi: '+447700900789', format: 'compact' });
    expect(e.json).toMatchObject({ bits: '0200', ttl: 300 });
    const nf = await h.resolve({ csi: '+33199000000', format: 'compact' });
    expect(nf.json).toMatchObject({ status: 'not_found', bits: '0000' });
  });
});

describe('failures', () => {
  it('fails over to the next replica', async () => {
    await h.stopEndpoint(url('dp-dc', 0));
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.json).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
    expect(res.json.incomplete).toBeUndefined();
  });

  it('serves stale when every replica is down after the TTL ran out (RFC 8767)', async () => {
    await h.resolve({ csi: '+12025550123' });
    h.clock.advance(3601);
    await h.stopEndpoint(url('dp-dc', 0));
    await h.stopEndpoint(url('dp-dc', 1));
    const res = await h.resolve({ csi: '+12025550123' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'found', stale: true, ttl: 30, mappings: [{ msp: 'chat-b' }, { msp: 'chat-d' }] });
  });

  it('lists a failed provider in incomplete and answers with the others', async () => {
    await h.stopEndpoint(url('dp-mail-b'));
    const res = await h.resolve({ csi: 'bob@example.com' });
    expect(res.json).toMatchObject({ status: 'found', incomplete: ['dp-mail-b'], mappings: [{ msp: 'chat-a', sources: ['dp-mail-a'] }] });
    expect(res.json.mappings).toHaveLength(1);
  });

  it('answers upstream_unavailable with nothing stale', async () => {
    await h.stopEndpoint(url('dp-org'));
    const res = await h.resolve({ csi: 'dave@example.org' });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.json.code).toBe('upstream_unavailable');
  });
});

describe('coalescing', () => {
  it('sends one upstream request for N concurrent identical questions', async () => {
    const answers = await Promise.all(Array.from({ length: 25 }, () => h.resolve({ csi: '+447700900456' })));
    expect(answers.every((a) => a.json.status === 'found')).toBe(true);
    expect(h.lookups('dp-uk')).toBe(1);
  });
});

describe('federation modes', () => {
  it('local: answers from the cache, else not_cached, never asking upstream', async () => {
    await h.resolve({ csi: '+447700900123' });
    const before = h.lookups('dp-uk');
    expect((await h.resolve({ csi: '+447700900123', federation: { mode: 'local' } })).json).toMatchObject({ status: 'found', cached: true });
    const miss = await h.resolve({ csi: '+447700900456', federation: { mode: 'local' } });
    expect(miss.status).toBe(404);
    expect(miss.json.code).toBe('not_cached');
    expect(h.lookups('dp-uk')).toBe(before);
    // Not even an expired root zone copy is refreshed in local mode.
    const fetches = h.dps.get('root')?.stats.zoneFetches;
    h.clock.advance(86_400);
    await h.resolve({ csi: '+447700900123', federation: { mode: 'local' } });
    expect(h.dps.get('root')?.stats.zoneFetches).toBe(fetches);
  });

  it('client-selected: only the chosen DPs; not_authoritative means no share', async () => {
    const b = await h.resolve({ csi: 'bob@example.com', federation: { mode: 'client-selected', dps: ['dp-mail-b'] } });
    expect(b.json).toMatchObject({ status: 'found', path: ['dp-mail-b'], mappings: [{ msp: 'chat-c' }] });
    expect(h.lookups('dp-mail-a')).toBe(0);
    const uk = await h.resolve({ csi: 'bob@example.com', federation: { mode: 'client-selected', dps: ['dp-uk'] } });
    expect(uk.json).toMatchObject({ status: 'not_found', path: ['dp-uk'] });
    expect(uk.json.incomplete).toBeUndefined();
    const bad = await h.resolve({ csi: 'bob@example.com', federation: { mode: 'client-selected', dps: ['dp-nowhere'] } });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_request');
  });

  it("client-selected follows a chosen DP's referral inside the zones the root delegates to it", async () => {
    const res = await h.resolve({ csi: '+12025550123', federation: { mode: 'client-selected', dps: ['dp-nanp'] } });
    expect(res.json).toMatchObject({ status: 'found', path: ['dp-nanp', 'dp-dc'] });
  });

  it('all: asks every DP of the registry and merges', async () => {
    const res = await h.resolve({ csi: 'bob@example.com', federation: { mode: 'all' } });
    expect(res.json).toMatchObject({ status: 'found', mappings: [{ msp: 'chat-a' }, { msp: 'chat-c' }] });
    expect(res.json.path).toEqual(['dp-uk', 'dp-nanp', 'dp-dc', 'dp-mail-a', 'dp-mail-b', 'dp-org']);
    expect(res.json.incomplete).toBeUndefined();
  });
});

describe('the root zone copy', () => {
  it('refreshes by conditional GET after its TTL and picks up a changed zone', async () => {
    await h.resolve({ csi: '+447700900123' });
    const stats = h.dps.get('root')?.stats;
    h.clock.advance(86_400);
    await h.resolve({ csi: '+447700900123' });
    expect(stats).toMatchObject({ zoneFetches: 2, zoneNotModified: 1 });

    const root = h.dps.get('root');
    if (root?.role !== 'root') throw new Error('no root');
    const old = root.current().dp;
    const changed: RootZone = {
      ...old.zone,
      serial: old.zone.serial + 1,
      delegations: [...old.zone.delegations, { zone: 'e164:33', providers: ['dp-uk'] }],
    };
    root.replace({ ...root.current(), dp: new RootDp(changed) });
    expect((await h.resolve({ csi: '+33199000000', format: 'compact' })).json).toMatchObject({ registry: 2026112301 });
    h.clock.advance(86_400);
    const after = await h.resolve({ csi: 'someone@example.net', format: 'compact' });
    expect(after.json).toMatchObject({ status: 'not_found', registry: 2026112302 });
    expect(stats?.zoneFetches).toBe(3);
    // The new delegation is followed: dp-uk is asked for +33 (and, not serving +33, is a lame delegation).
    const lame = await h.resolve({ csi: '+33199000001' });
    expect(h.lookups('dp-uk')).toBe(3); // +447700900123 twice (its record expired with the day), then +33
    expect(lame.json).toMatchObject({ code: 'upstream_unavailable' });
  });
});

describe('DNS owner names in place of CSIs (PROTOCOL.md §6)', () => {
  const bobName = ownerName(parseCsi('bob@example.com'));

  it('a DP answers a hashed e-mail name with the CSI', async () => {
    const dp = `${h.servers['dp-mail-a']?.[0]}/v1/lookup`;
    expect((await postJson(dp, { name: bobName })).json).toMatchObject({
      kind: 'answer',
      mappings: [{ csi: 'mailto:bob@example.com', msp: 'chat-a' }],
    });
    const nobody = ownerName(parseCsi('nobody@example.com'));
    expect((await postJson(dp, { name: nobody })).json).toMatchObject({ kind: 'not_found', zone: 'email:example.com' });
    const both = await postJson(dp, { name: bobName, csi: 'bob@example.com' });
    expect(both.status).toBe(400);
    expect(both.json.code).toBe('invalid_request');
  });

  it('the resolver resolves a hashed e-mail name across both shares, and a phone name', async () => {
    const res = await h.resolve({ name: bobName });
    expect(res.json).toMatchObject({ csi: 'mailto:bob@example.com', status: 'found', mappings: [{ msp: 'chat-a' }, { msp: 'chat-c' }] });
    const phone = await h.resolve({ name: '3.2.1.0.5.5.5.2.0.2.1.E164.mimi.arpa.' });
    expect(phone.json).toMatchObject({ csi: 'tel:+12025550123', status: 'found' });
    const bad = await h.resolve({ name: 'www.example.com' });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_csi');
  });
});
