/**
 * The PostgreSQL store (PROTOCOL.md §13) against a real cluster: the store's
 * contract (atomic updates, batches, replay records, delegations), migrations
 * run once by processes starting together, and two DP processes serving one
 * DP id from one database (a write through one is served by the other within
 * 1 s, through LISTEN/NOTIFY; a restart of both loses nothing).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emailHashKey } from '../../src/dp/authoritative-dp.ts';
import type { CsiRecords, DpStore } from '../../src/dp/store.ts';
import { hashLocalPart } from '../../src/protocol/enum-name.ts';
import { openPostgresStore } from '../../src/store/postgres-store.ts';
import { freePort } from '../fixtures/free-port.ts';
import { checkPostgres, startCluster, type PgCluster } from '../fixtures/postgres.ts';
import { lookupAt, postAt, startPgDeployment, type PgDeployment } from '../fixtures/pg-deployment.ts';
import { signFlattened } from '../../src/protocol/jws.ts';
import { storedMapping } from '../fixtures/stored-mapping.ts';
import { encodeProof } from '../../src/store/proof-codec.ts';

const runs = checkPostgres('the PostgreSQL store tests');

const mapping = storedMapping;

let cluster: PgCluster;
const opened: DpStore[] = [];
async function open(id: string): Promise<DpStore> {
  const store = await openPostgresStore({ url: cluster.url(), id, hashKey: emailHashKey, timeoutMs: 5000 });
  opened.push(store);
  return store;
}

beforeAll(async () => {
  if (runs) cluster = await startCluster({ standby: false });
}, 120_000);
afterAll(async () => {
  await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
  await cluster?.destroy();
});

describe.runIf(runs)('the PostgreSQL store', () => {
  // Each test's stores closed after it: their pools would otherwise hold connections the two-process tests below need (max_connections 50).
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close().catch(() => undefined)));
  });
  it('migrates an empty database once when several processes start together', async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => open('dp-race')));
    expect(stores).toHaveLength(4);
    const rows = await cluster.primary.query<{ version: number }>('SELECT version FROM "dp-race".schema_version');
    expect(rows).toEqual([{ version: 1 }]);
  });

  it('commits each update of a batch on its own, a refused one changing nothing, a later one seeing an earlier one', async () => {
    const store = await open('dp-contract');
    const settled = await store.updateAll([
      { csi: 'tel:+447700900001', decide: (r: CsiRecords) => r.putActive(mapping('tel:+447700900001')) },
      { csi: 'tel:+447700900001', decide: (r: CsiRecords) => r.active().map((m) => m.msp) },
      {
        csi: 'tel:+447700900002',
        decide: (r: CsiRecords) => {
          r.putActive(mapping('tel:+447700900002'));
          throw new Error('refused after deciding');
        },
      },
    ]);
    expect(settled.map((s) => s.ok)).toEqual([true, true, false]);
    expect(settled[1]).toEqual({ ok: true, value: ['chat-a'] });
    expect(await store.active('tel:+447700900001')).toHaveLength(1);
    expect(await store.active('tel:+447700900002')).toHaveLength(0);
    // A decision's own refusal reaches the caller as it is.
    await expect(
      store.update({
        csi: 'tel:+447700900003',
        decide: () => {
          throw new Error('mine');
        },
      }),
    ).rejects.toThrow('mine');
  });

  it("writes a batch's mappings as their final state: the last put or remove of each CSI and MSP, across updates", async () => {
    const store = await open('dp-final');
    const [a, b, c] = ['tel:+447700900041', 'tel:+447700900042', 'tel:+447700900043'];
    const email = 'mailto:ann@example.org';
    await store.update({ csi: c, decide: (r) => r.putActive(mapping(c)) });
    const settled = await store.updateAll([
      { csi: a, decide: (r) => r.putActive(mapping(a)) },
      { csi: a, decide: (r) => r.putActive(mapping(a, 'chat-b')) },
      { csi: a, decide: (r) => r.removeActive('chat-a') },
      { csi: a, decide: (r) => r.putActive({ ...mapping(a, 'chat-b'), preference: 7 }) },
      { csi: b, decide: (r) => r.putActive(mapping(b)) },
      { csi: b, decide: (r) => r.removeActive('chat-a') },
      { csi: c, decide: (r) => r.removeActive('chat-a') },
      { csi: c, decide: (r) => r.putActive({ ...mapping(c), preference: 3 }) },
      {
        csi: email,
        statements: ['h-1', 'h-1'],
        decide: (r) => r.putActive({ ...mapping(email), visibility: { audience: 'msps', msps: ['chat-a', 'chat-c'] } }),
      },
      { csi: email, statements: ['h-1'], decide: (r) => r.markSeen('h-1', 2) },
    ]);
    expect(settled.every((s) => s.ok)).toBe(true);
    // A second process: nothing cached, everything read from the database.
    const other = await open('dp-final');
    expect((await other.active(a)).map((m) => [m.msp, m.preference])).toEqual([['chat-b', 7]]);
    expect(await other.active(b)).toEqual([]);
    expect((await other.active(c)).map((m) => [m.msp, m.preference])).toEqual([['chat-a', 3]]);
    const [mail] = await other.active(email);
    expect(mail?.visibility).toEqual({ audience: 'msps', msps: ['chat-a', 'chat-c'] });
    expect(mail?.proof).toEqual(mapping(email).proof);
    expect(await other.csiByHash(hashLocalPart('ann'), 'example.org')).toBe(email);
    const rows = await cluster.primary.query<{ hash: string }>('SELECT hash FROM "dp-final".seen_statements');
    expect(rows.map((r) => r.hash)).toEqual(['h-1']);
  });

  it('keeps pending registrations in order, revocations, deactivations and seen statements', async () => {
    const store = await open('dp-records');
    const csi = 'tel:+447700900010';
    const pending = (id: string) => ({ ...mapping(csi, 'chat-b'), id, since: 5, contested: false });
    await store.update({
      csi,
      statements: ['hash-1'],
      decide: (r) => {
        r.addPending(pending('c-2'));
        r.addPending(pending('c-1'));
        r.setLastRevoke('h', 7, mapping(csi).holderJwk);
        r.setDeactivatedAt(9);
        r.markSeen('hash-1', 1);
        r.markContested('c-1');
      },
    });
    expect((await store.pendingOf(csi)).map((p) => [p.id, p.contested])).toEqual([
      ['c-2', false],
      ['c-1', true],
    ]);
    expect(await store.pendingCount()).toBe(2);
    expect((await store.pendingList(1, 'c-2')).map((p) => p.id)).toEqual(['c-1']);
    expect((await store.lastRevoke('h', csi))?.iat).toBe(7);
    const seen = await store.update({ csi, statements: ['hash-1', 'hash-2'], decide: (r) => [r.seen('hash-1'), r.seen('hash-2'), r.deactivatedAt()] });
    expect(seen).toEqual([true, false, 9]);
  });

  it('finds e-mail CSIs by hash and lists lapsed mappings oldest first', async () => {
    const store = await open('dp-index');
    await store.load([mapping('mailto:carol@example.com'), { ...mapping('tel:+447700900020'), attestationIat: 0 }]);
    expect(await store.csiByHash(hashLocalPart('carol'), 'example.com')).toBe('mailto:carol@example.com');
    expect(await store.csiByHash(hashLocalPart('dave'), 'example.com')).toBeUndefined();
    expect(await store.issuedBefore(1, 10)).toEqual([{ csi: 'tel:+447700900020', msp: 'chat-a' }]);
  });

  it('serialises delegation changes and passes a refusal on as it is', async () => {
    const store = await open('root-deleg');
    const d = {
      id: 'd-1',
      zone: 'e164:33',
      dp: { id: 'dp-fr', endpoints: ['https://dp.example'], jwk: mapping('x').holderJwk },
      status: 'pending' as const,
      at: 1,
    };
    const results = await Promise.all(
      Array.from({ length: 5 }, () => store.changeDelegations((all) => (all.some((x) => x.id === 'd-1') ? { value: 'kept' } : { put: [d], value: 'stored' }))),
    );
    expect(results.filter((r) => r === 'stored')).toHaveLength(1);
    await expect(
      store.changeDelegations(() => {
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    await store.changeDelegations(() => ({ put: [{ ...d, status: 'active' }], serial: 7, value: undefined }));
    expect(await store.rootSerial()).toBe(7);
    expect((await store.delegations()).map((x) => x.status)).toEqual(['active']);
  });

  it('tells another process of a write (NOTIFY) and drops its cached answer', async () => {
    const [a, b] = [await open('dp-shared'), await open('dp-shared')];
    const csi = 'tel:+447700900030';
    expect(await b.active(csi)).toEqual([]); // cached empty in b
    const heard = new Promise<string | undefined>((resolve) => b.onRemoteChange(resolve));
    await a.update({ csi, decide: (r) => r.putActive(mapping(csi)) });
    expect(await heard).toBe(csi);
    expect(await b.active(csi)).toHaveLength(1);
  });

  it('serves from its cache again once a failure is over and its LISTEN proves to work', async () => {
    const store = await openPostgresStore({ url: cluster.url(), id: 'dp-probe', hashKey: emailHashKey, timeoutMs: 500 });
    opened.push(store);
    expect(await store.active('tel:+447700900040')).toEqual([]);
    // Another session holds the table: a read times out, and the store stops trusting its cache.
    const held = cluster.primary.query('BEGIN; LOCK TABLE "dp-probe".mappings IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1.5); COMMIT;');
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(store.active('tel:+447700900041')).rejects.toMatchObject({ code: 'store_unavailable' });
    await held;
    await store.pendingCount(); // a query that works: the store probes its LISTEN
    await new Promise((resolve) => setTimeout(resolve, 300));
    const csi = 'tel:+447700900042';
    expect(await store.active(csi)).toEqual([]); // cached again
    // A row written behind the store's back (no NOTIFY) is not seen: the answer came from the cache.
    const m = storedMapping(csi);
    await cluster.primary.query(
      `INSERT INTO "dp-probe".mappings (csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at)
       VALUES ('${csi}', 'chat-a', 1, '${m.created}', 'h', '${JSON.stringify(m.holderJwk)}', 'otp', 1, '\\x${encodeProof(m.proof).toString('hex')}', 1)`,
    );
    expect(await store.active(csi)).toEqual([]);
  });

  it('tells another root process of a delegation change', async () => {
    const [a, b] = [await open('root-shared'), await open('root-shared')];
    const heard = new Promise<void>((resolve) => b.onDelegationsChange(resolve));
    await a.changeDelegations(() => ({ serial: 3, value: undefined }));
    await heard;
    expect(await b.rootSerial()).toBe(3);
  });

  it('refuses to start, naming the problem, when PostgreSQL cannot be reached', async () => {
    const port = await freePort();
    await expect(
      openPostgresStore({ url: `postgres://mimi@127.0.0.1:${port}/mimi`, id: 'dp-x', hashKey: emailHashKey, timeoutMs: 1000 }),
    ).rejects.toMatchObject({
      code: 'start_refused',
    });
  });
});

/** Two `mimi serve` processes for dp-uk on one database, a third for the root. */
describe.runIf(runs)('two DP processes on one database', () => {
  let deployment: PgDeployment;
  beforeAll(async () => {
    // Both start at once on an empty database: the migrations run once.
    if (runs)
      deployment = await startPgDeployment([
        { url: cluster.url(), timeoutMs: 3000 },
        { url: cluster.url(), timeoutMs: 3000 },
      ]);
  }, 120_000);
  afterAll(async () => {
    await deployment?.destroy();
  });

  /** Polls a lookup for at most `ms` until its kind is `kind`; answers whether it was. */
  const within = async (ms: number, url: string, csi: string, kind: string): Promise<boolean> => {
    const deadline = performance.now() + ms;
    do {
      if ((await lookupAt(url, csi)).kind === kind) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    } while (performance.now() < deadline);
    return false;
  };

  it('serves a registration made through one process from the other within 1 s, and a revocation likewise', async () => {
    const [a = '', b = ''] = deployment.dpUrls;
    const csi = 'tel:+447700900100';
    expect((await lookupAt(b, csi)).kind).toBe('not_found'); // b has looked it up (and would keep that answer)
    const { statement, holder } = await deployment.statement(csi);
    expect((await postAt(`${a}/v1/mappings`, statement)).status).toBe(201);
    expect(await within(1000, b, csi, 'answer')).toBe(true);

    expect((await lookupAt(a, csi)).kind).toBe('answer'); // a has it cached too
    const revoke = await signFlattened({ csi, msp: '*', iat: Math.floor(Date.now() / 1000) }, holder);
    expect((await postAt(`${b}/v1/mappings/revoke`, revoke)).status).toBe(200);
    expect(await within(1000, a, csi, 'not_found')).toBe(true);
  });

  it('loses nothing when both processes restart', async () => {
    const [a = ''] = deployment.dpUrls;
    const csis = Array.from({ length: 20 }, (_, i) => `tel:+4477009002${String(i).padStart(2, '0')}`);
    for (const csi of csis) expect((await postAt(`${a}/v1/mappings`, (await deployment.statement(csi)).statement)).status).toBe(201);
    await Promise.all([deployment.stopDp(0), deployment.stopDp(1)]);
    const started = await Promise.all([deployment.startDp(0), deployment.startDp(1)]);
    expect(started.map((s) => s.ready)).toEqual([true, true]);
    for (const url of deployment.dpUrls) {
      const kinds = await Promise.all(csis.map(async (csi) => (await lookupAt(url, csi)).kind));
      expect(new Set(kinds)).toEqual(new Set(['answer']));
    }
  }, 60_000);
});
