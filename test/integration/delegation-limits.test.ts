/**
 * The root bounds delegation requests over HTTP (PROTOCOL.md §16), on a real
 * hierarchy whose DPs run on a fake clock: a replayed request keeps one
 * pending id, pending requests are capped per key, `POST /v1/delegations` has
 * a bucket per client, the admin lists are paged with a `next` cursor, and the
 * root's well-known discloses the bounds.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, signFlattened, type SigningKey } from '../../src/protocol/jws.ts';
import { bootHierarchy, createClock, postJson, type TestClock, type TestHierarchy } from './harness.ts';

const TOKEN = 'delegation-limits-admin-token';
/** Seconds for one token of the 10-per-minute bucket to come back. */
const TOKEN_SECONDS = 6;
let h: TestHierarchy;
let clock: TestClock;

const root = (): string => h.servers.root?.[0] ?? '';
const sign = (zone: string, key: SigningKey, id = 'dp-new'): Promise<unknown> =>
  signFlattened({ zone, dp: { id, endpoints: ['http://127.0.0.1:1'], jwk: key.publicJwk } }, key);
const post = (jws: unknown) => postJson(`${root()}/v1/delegations`, jws);
const admin = async (base: string, path: string): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};
/** Lets the client bucket refill. */
const rest = (): void => clock.advance(600);

beforeAll(async () => {
  clock = createClock();
  // Signed, so the authoritative DPs serve the lifecycle API (conflicts) too.
  const keysDir = await mkdtemp(join(tmpdir(), 'mimi-deleg-limits-keys-'));
  h = await bootHierarchy({ adminToken: TOKEN, dpNow: () => clock.now, keysDir });
});
afterAll(async () => {
  await h.close();
});

describe('delegation requests', () => {
  it('answers the same signed request replayed 400 times with one pending id, stored once', async () => {
    rest();
    const key = await generateSigningKey();
    const jws = await sign('e164:3399', key);
    const ids = new Set<unknown>();
    for (let i = 0; i < 400; i++) {
      const res = await post(jws);
      expect(res.status).toBe(202);
      ids.add(res.json.id);
      clock.advance(TOKEN_SECONDS); // within the client's bucket
    }
    expect(ids.size).toBe(1);
    const listed = (await admin(root(), '/v1/admin/delegations?limit=500')).json.pending as { id: string; zone: string }[];
    expect(listed.filter((p) => p.zone === 'e164:3399')).toEqual([expect.objectContaining({ id: [...ids][0] })]);
  });

  it('refuses the 11th distinct pending request for one key: 429 rate_limited with Retry-After', async () => {
    rest();
    const key = await generateSigningKey();
    for (let i = 0; i < 10; i++) {
      expect((await post(await sign(`e164:34${10 + i}`, key))).status).toBe(202);
      clock.advance(TOKEN_SECONDS);
    }
    const eleventh = await post(await sign('e164:3420', key));
    expect(eleventh.status).toBe(429);
    expect(eleventh.json.code).toBe('rate_limited');
    expect(Number(eleventh.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    clock.advance(TOKEN_SECONDS);
    expect((await post(await sign('e164:3420', await generateSigningKey()))).status).toBe(202);
  });

  it('gives each client a bucket of 10 per minute: the 11th within a minute is 429', async () => {
    rest();
    for (let i = 0; i < 10; i++) expect((await post(await sign(`e164:35${10 + i}`, await generateSigningKey()))).status).toBe(202);
    const over = await post(await sign('e164:3520', await generateSigningKey()));
    expect(over.status).toBe(429);
    expect(over.json.code).toBe('rate_limited');
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Even a malformed request draws from the bucket first.
    expect((await post({ not: 'a jws' })).status).toBe(429);
    clock.advance(TOKEN_SECONDS);
    expect((await post(await sign('e164:3520', await generateSigningKey()))).status).toBe(202);
  });
});

describe('paged admin lists', () => {
  it('pages pending delegations with next, every item exactly once', async () => {
    rest();
    const all = new Set<string>();
    for (const p of (await admin(root(), '/v1/admin/delegations?limit=500')).json.pending as { id: string }[]) all.add(p.id);
    expect(all.size).toBeGreaterThan(20);
    const seen: string[] = [];
    const sizes: number[] = [];
    let path = '/v1/admin/delegations?limit=7';
    for (let pages = 0; pages < 100; pages++) {
      const res = await admin(root(), path);
      expect(res.status).toBe(200);
      const page = res.json.pending as { id: string }[];
      seen.push(...page.map((p) => p.id));
      sizes.push(page.length);
      if (res.json.next === undefined) break;
      expect(res.json.next).toBe(page[page.length - 1]?.id);
      path = `/v1/admin/delegations?limit=7&after=${res.json.next as string}`;
    }
    // Full pages of 7 with a next cursor, then the rest without one.
    expect(sizes).toEqual([...Array<number>(Math.ceil(all.size / 7) - 1).fill(7), all.size - 7 * (Math.ceil(all.size / 7) - 1)]);
    expect(seen).toHaveLength(all.size);
    expect(new Set(seen)).toEqual(all);
    // The default page is 100: everything here, so no next.
    expect((await admin(root(), '/v1/admin/delegations')).json.next).toBeUndefined();
  });

  it.each(['limit=0', 'limit=501', 'limit=x', 'limit=-1', 'limit=1.5', 'after=', 'after=d-gone', 'other=1'])(
    'refuses ?%s on the delegations list (400 invalid_request)',
    async (query) => {
      const res = await admin(root(), `/v1/admin/delegations?${query}`);
      expect(res.status).toBe(400);
      expect(res.json.code).toBe('invalid_request');
    },
  );

  it('pages pending conflicts on an authoritative DP the same way', async () => {
    const dp = h.servers['dp-uk']?.[0] ?? '';
    const first = await admin(dp, '/v1/admin/conflicts?limit=500');
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ pending: [] });
    for (const query of ['limit=0', 'limit=501', 'limit=abc', 'after=c-gone']) {
      const res = await admin(dp, `/v1/admin/conflicts?${query}`);
      expect(res.status).toBe(400);
      expect(res.json.code).toBe('invalid_request');
    }
  });
});

describe('well-known', () => {
  it('discloses the bounds on delegation requests on the root only', async () => {
    const rootLimits = ((await (await fetch(`${root()}/.well-known/mimi-discovery`)).json()) as { limits: Record<string, unknown> }).limits;
    expect(rootLimits.delegations).toEqual({ clientRate: 10 / 60, clientBurst: 10, pendingPerKey: 10, pendingTotal: 1000, activePerKey: 10 });
    const dpLimits = ((await (await fetch(`${h.servers['dp-uk']?.[0] ?? ''}/.well-known/mimi-discovery`)).json()) as { limits: Record<string, unknown> })
      .limits;
    expect(dpLimits.delegations).toBeUndefined();
  });
});
