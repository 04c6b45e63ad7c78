/**
 * The SQLite store (PROTOCOL.md §9): group commit keeps each write atomic on
 * its own, commits survive a reopen, and the e-mail hash and prefix indexes
 * answer what the DNS view asks.
 */
import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emailHashKey } from '../../../src/dp/authoritative-dp.ts';
import type { CsiRecords, DpStore, StoredMapping } from '../../../src/dp/store.ts';
import { hashLocalPart } from '../../../src/protocol/enum-name.ts';
import { openSqliteStore } from '../../../src/store/sqlite-store.ts';
import { storedMapping } from '../../fixtures/stored-mapping.ts';

const mapping = storedMapping;

/** An update that registers `m` (and names no statement). */
const put = (m: StoredMapping) => ({ csi: m.csi, decide: (r: CsiRecords) => r.putActive(m) });

describe('SQLite store', () => {
  it('commits a group of updates together, each atomic on its own: a refused one changes nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-store-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    const results = await Promise.allSettled([
      store.update(put(mapping('tel:+447700900001'))),
      store.update({
        csi: 'tel:+447700900002',
        decide: (r) => {
          r.putActive(mapping('tel:+447700900002'));
          throw new Error('refused after deciding');
        },
      }),
      store.update(put(mapping('tel:+447700900003'))),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    await store.close();
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(await again.active('tel:+447700900001')).toHaveLength(1);
    expect(await again.active('tel:+447700900002')).toHaveLength(0);
    expect(await again.active('tel:+447700900003')).toHaveLength(1);
    await again.close();
  });

  it('settles each update of a batch on its own, a later one seeing an earlier one of the same CSI', async () => {
    const store = openSqliteStore(undefined, 'dp', { hashKey: emailHashKey });
    const settled = await store.updateAll([
      put(mapping('tel:+447700900010', 'chat-a')),
      { csi: 'tel:+447700900010', decide: (r) => r.active().map((m) => m.msp) },
      {
        csi: 'tel:+447700900011',
        decide: () => {
          throw new Error('refused');
        },
      },
    ]);
    expect(settled.map((s) => s.ok)).toEqual([true, true, false]);
    expect(settled[1]).toEqual({ ok: true, value: ['chat-a'] });
    await store.close();
  });

  it('commits updates still waiting for their group when the store closes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-store-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    const pending = store.update(put(mapping('tel:+447700900004')));
    await store.close();
    await pending;
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(await again.active('tel:+447700900004')).toHaveLength(1);
    await again.close();
  });

  it('finds e-mail CSIs by hash', async () => {
    const store = openSqliteStore(undefined, 'dp', { hashKey: emailHashKey });
    await store.load([mapping('mailto:carol@example.com'), mapping('tel:+447700900005')]);
    expect(await store.csiByHash(hashLocalPart('carol'), 'example.com')).toBe('mailto:carol@example.com');
    expect(await store.csiByHash(hashLocalPart('dave'), 'example.com')).toBeUndefined();
    await store.close();
  });

  it('remembers seen statements across a reopen (PROTOCOL.md §16 replays)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mimi-store-seen-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    const seen = (s: DpStore, hash: string): Promise<boolean> => s.update({ csi: 'tel:+447700900006', statements: [hash], decide: (r) => r.seen(hash) });
    expect(await seen(store, 'h1')).toBe(false);
    await store.update({ csi: 'tel:+447700900006', statements: ['h1'], decide: (r) => r.markSeen('h1', 1) });
    await store.update({ csi: 'tel:+447700900006', statements: ['h1'], decide: (r) => r.markSeen('h1', 2) }); // idempotent
    await store.close();
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(await seen(again, 'h1')).toBe(true);
    expect(await seen(again, 'h2')).toBe(false);
    await again.close();
  });

  it('reads the JSON proofs and holder keys of rows written before proofs were deflated (schema 3)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mimi-store-v3-'));
    await openSqliteStore(dir, 'dp', { hashKey: emailHashKey }).close();
    const m = mapping('tel:+447700900007');
    const db = new Database(join(dir, 'dp.sqlite'));
    db.prepare(
      'INSERT INTO mappings (csi, msp, preference, created, holder, holder_jwk, level, att_iat, proof, registered_at) VALUES (?,?,?,?,?,?,?,?,?,?)',
    ).run(m.csi, m.msp, m.preference, m.created, m.holder, JSON.stringify(m.holderJwk), m.level, m.attestationIat, JSON.stringify(m.proof), m.registeredAt);
    db.close();
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(await again.active(m.csi)).toEqual([m]);
    await again.close();
  });

  it('makes new files with 8 KiB pages, and leaves the page size of a store that exists', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mimi-store-pages-'));
    const pageSize = (): number => {
      const db = new Database(join(dir, 'dp.sqlite'), { readonly: true });
      try {
        return db.pragma('page_size', { simple: true }) as number;
      } finally {
        db.close();
      }
    };
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    await store.load([mapping('tel:+447700900008')]);
    await store.close();
    expect(pageSize()).toBe(8192);
    // A store made with 4 KiB pages (as before) keeps them: only a VACUUM could change them, and none runs.
    const db = new Database(join(dir, 'dp.sqlite'));
    db.pragma('journal_mode = DELETE');
    db.pragma('page_size = 4096');
    db.exec('VACUUM');
    db.pragma('journal_mode = WAL');
    db.close();
    expect(pageSize()).toBe(4096);
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(await again.active('tel:+447700900008')).toHaveLength(1);
    await again.close();
    expect(pageSize()).toBe(4096);
  });
});
