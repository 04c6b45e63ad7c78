/**
 * The root's bounds on delegation requests and the paged admin lists
 * (PROTOCOL.md §16), on the registrars over an in-memory store: identical
 * pending requests keep one id (even when they arrive together), pending
 * requests are capped per key and in all, each client has a bucket, and both
 * admin lists page with a `next` cursor.
 */
import { describe, expect, it } from 'vitest';
import { emailHashKey } from '../../../src/dp/authoritative-dp.ts';
import { DelegationRegistrar } from '../../../src/dp/delegations.ts';
import { Registrar } from '../../../src/dp/registrar.ts';
import type { PendingMapping } from '../../../src/dp/store.ts';
import { MimiError } from '../../../src/errors.ts';
import { generateSigningKey, signFlattened, type SigningKey } from '../../../src/protocol/jws.ts';
import { delegationPayloadSchema, readSignedRequest } from '../../../src/protocol/signed-request.ts';
import { openSqliteStore } from '../../../src/store/sqlite-store.ts';
import { loadZoneDir } from '../../../src/zone/load.ts';
import { DEFAULT_LIMITS, type DelegationLimits } from '../../../src/zone/limits-file.ts';
import type { AuthoritativeZone, RootZone } from '../../../src/zone/normalise.ts';
import { storedMapping } from '../../fixtures/stored-mapping.ts';

const zones = await loadZoneDir('test/fixtures/hierarchy');
const root = zones.find((z) => z.zone.role === 'root')?.zone as RootZone;
const dpUk = zones.find((z) => z.zone.id === 'dp-uk')?.zone as AuthoritativeZone;
const noTxt = (): Promise<string[]> => Promise.resolve([]);

async function registrar(limits?: Partial<DelegationLimits>) {
  const clock = { now: Date.parse('2026-11-23T12:00:00Z') };
  const store = openSqliteStore(undefined, 'root', { hashKey: emailHashKey });
  const r = await DelegationRegistrar.open(
    root,
    store,
    () => clock.now,
    () => undefined,
    limits === undefined ? undefined : { ...DEFAULT_LIMITS.delegations, ...limits },
  );
  return { r, store, clock };
}

async function signed(zone: string, key: SigningKey, id = 'dp-new') {
  const jws = await signFlattened({ zone, dp: { id, endpoints: ['http://127.0.0.1:1'], jwk: key.publicJwk } }, key);
  return readSignedRequest(jws, delegationPayloadSchema);
}

const pendingRows = async (store: ReturnType<typeof openSqliteStore>): Promise<number> =>
  (await store.delegations()).filter((d) => d.status === 'pending').length;

describe('delegation requests', () => {
  it('answers an identical pending request with the same id, even when copies arrive together', async () => {
    const { r, store } = await registrar();
    const key = await generateSigningKey();
    const request = await signed('e164:3399', key);
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => r.request(request, noTxt)));
    expect(new Set(outcomes.map((o) => (o.status === 'pending' ? o.id : '')))).toHaveProperty('size', 1);
    expect(await pendingRows(store)).toBe(1);
    // Another zone, another DP id or another key is another request.
    const ids = new Set<string>();
    for (const req of [await signed('e164:3398', key), await signed('e164:3399', key, 'dp-other'), await signed('e164:3399', await generateSigningKey())]) {
      const o = await r.request(req, noTxt);
      if (o.status === 'pending') ids.add(o.id);
    }
    expect(ids.size).toBe(3);
    expect(await pendingRows(store)).toBe(4);
  });

  it('bounds the e-mail zones one key holds through DNS proof (activePerKey): then 429, and the root zone stops growing', async () => {
    const { r } = await registrar({ activePerKey: 3 });
    const key = await generateSigningKey();
    const { thumbprint } = await import('../../../src/protocol/jws.ts');
    const proof = [`mimi-dp=${await thumbprint(key.publicJwk)}`];
    const txt = (): Promise<string[]> => Promise.resolve(proof);
    for (let i = 0; i < 3; i++) expect((await r.request(await signed(`email:d${i}.example.net`, key), txt)).status).toBe('active');
    const before = r.zone.delegations.length;
    await expect(r.request(await signed('email:d3.example.net', key), txt)).rejects.toMatchObject({ code: 'rate_limited' });
    expect(r.zone.delegations.length).toBe(before);
    // Registering one of its zones again is no new zone: allowed.
    expect((await r.request(await signed('email:d0.example.net', key), txt)).status).toBe('active');
  });

  it('keeps at most pendingPerKey per key and pendingTotal in all: then 429 rate_limited with Retry-After', async () => {
    const { r } = await registrar({ pendingPerKey: 2, pendingTotal: 3 });
    const a = await generateSigningKey();
    await r.request(await signed('e164:3301', a), noTxt);
    await r.request(await signed('e164:3302', a), noTxt);
    await expect(r.request(await signed('e164:3303', a), noTxt)).rejects.toMatchObject({ code: 'rate_limited', status: 429, retryAfter: 60 });
    // The identical request still gets its id when the key is at its bound.
    await expect(r.request(await signed('e164:3301', a), noTxt)).resolves.toMatchObject({ status: 'pending' });
    await r.request(await signed('e164:3304', await generateSigningKey()), noTxt);
    await expect(r.request(await signed('e164:3305', await generateSigningKey()), noTxt)).rejects.toMatchObject({ code: 'rate_limited', retryAfter: 60 });
  });

  it('gives each client a bucket of 10 per minute', async () => {
    const { r, clock } = await registrar();
    for (let i = 0; i < 10; i++) r.admit('net:192.0.2.0/24');
    let refused: unknown;
    try {
      r.admit('net:192.0.2.0/24');
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(MimiError);
    expect(refused).toMatchObject({ code: 'rate_limited' });
    expect((refused as MimiError).retryAfter).toBeGreaterThanOrEqual(1);
    r.admit('net:198.51.100.0/24');
    clock.now += 6000;
    r.admit('net:192.0.2.0/24');
    expect(() => r.admit('net:192.0.2.0/24')).toThrow(MimiError);
  });

  it('pages the pending list with a next cursor, every item exactly once; an unknown cursor is invalid_request', async () => {
    const { r } = await registrar();
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
      const o = await r.request(await signed(`e164:33${10 + i}`, await generateSigningKey()), noTxt);
      if (o.status === 'pending') made.push(o.id);
    }
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await r.pending(3, after);
      seen.push(...page.pending.map((p) => p.id));
      if (page.next === undefined) break;
      expect(page.pending).toHaveLength(3);
      after = page.next;
    }
    expect(seen.sort()).toEqual([...made].sort());
    expect((await r.pending(7)).next).toBeUndefined();
    expect((await r.pending(6)).next).toBeDefined();
    await expect(r.pending(3, 'd-unknown')).rejects.toThrow(expect.objectContaining({ code: 'invalid_request' }) as Error);
  });
});

describe('the conflicts admin list', () => {
  it('pages pending conflicts in insertion order with a next cursor', async () => {
    const store = openSqliteStore(undefined, 'dp-uk', { hashKey: emailHashKey });
    const reg = new Registrar(
      store,
      dpUk,
      () => Date.parse('2026-11-23T12:00:00Z'),
      () => undefined,
    );
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = `c-${String(i)}`;
      ids.push(id);
      const pending: PendingMapping = { ...storedMapping(`tel:+4477009000${String(i)}`), id, since: Date.parse('2026-11-23T00:00:00Z'), contested: false };
      await store.update({ csi: pending.csi, decide: (r) => r.addPending(pending) });
    }
    const first = await reg.conflicts(2);
    expect(first.pending.map((p) => p.id)).toEqual(['c-0', 'c-1']);
    expect(first.next).toBe('c-1');
    const second = await reg.conflicts(2, first.next);
    expect(second.pending.map((p) => p.id)).toEqual(['c-2', 'c-3']);
    const last = await reg.conflicts(2, second.next);
    expect(last.pending.map((p) => p.id)).toEqual(['c-4']);
    expect(last.next).toBeUndefined();
    expect((await reg.conflicts(5)).next).toBeUndefined();
    await expect(reg.conflicts(2, 'c-unknown')).rejects.toThrow(expect.objectContaining({ code: 'invalid_request' }) as Error);
  });
});
