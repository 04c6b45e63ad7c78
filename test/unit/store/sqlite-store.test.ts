/**
 * The SQLite store (PROTOCOL.md §9): group commit keeps each write atomic on
 * its own, commits survive a reopen, and the e-mail hash and prefix indexes
 * answer what the DNS view asks.
 */
import { mkdtempSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emailHashKey } from '../../../src/dp/authoritative-dp.ts';
import type { StoredMapping } from '../../../src/dp/store.ts';
import { hashLocalPart } from '../../../src/protocol/enum-name.ts';
import { openSqliteStore } from '../../../src/store/sqlite-store.ts';

const mapping = (csi: string, msp = 'chat-a'): StoredMapping => ({
  csi,
  msp,
  preference: 1,
  created: '2026-11-23T00:00:00Z',
  holder: 'h',
  holderJwk: { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) },
  level: 'otp',
  attestationIat: 1,
  proof: { payload: 'e30', signatures: [{ protected: 'e30', signature: 'AA' }] },
  registeredAt: 1,
});

describe('SQLite store', () => {
  it('commits a group of writes together, each atomic on its own: a failing one undoes only itself', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-store-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    const results = await Promise.allSettled([
      store.commit(() => store.putActive(mapping('tel:+447700900001'))),
      store.commit(() => {
        store.putActive(mapping('tel:+447700900002'));
        throw new Error('refused after writing');
      }),
      store.commit(() => store.putActive(mapping('tel:+447700900003'))),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    store.close();
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(again.active('tel:+447700900001')).toHaveLength(1);
    expect(again.active('tel:+447700900002')).toHaveLength(0);
    expect(again.active('tel:+447700900003')).toHaveLength(1);
    again.close();
  });

  it('commits writes still waiting for their group when the store closes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mimi-store-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    const pending = store.commit(() => store.putActive(mapping('tel:+447700900004')));
    store.close();
    await pending;
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(again.active('tel:+447700900004')).toHaveLength(1);
    again.close();
  });

  it('finds e-mail CSIs by hash', () => {
    const store = openSqliteStore(undefined, 'dp', { hashKey: emailHashKey });
    store.putActive(mapping('mailto:carol@example.com'));
    store.putActive(mapping('tel:+447700900005'));
    expect(store.csiByHash(hashLocalPart('carol'), 'example.com')).toBe('mailto:carol@example.com');
    expect(store.csiByHash(hashLocalPart('dave'), 'example.com')).toBeUndefined();
    store.close();
  });

  it('remembers seen statements across a reopen (PROTOCOL.md §16 replays)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mimi-store-seen-'));
    const store = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(store.seenStatement('h1')).toBe(false);
    store.transaction(() => store.markSeen('h1', 1));
    store.transaction(() => store.markSeen('h1', 2)); // idempotent
    store.close();
    const again = openSqliteStore(dir, 'dp', { hashKey: emailHashKey });
    expect(again.seenStatement('h1')).toBe(true);
    expect(again.seenStatement('h2')).toBe(false);
    again.close();
  });
});
