/**
 * A server's signing key against the records its store holds (PROTOCOL.md
 * §16): refused when the key file is missing or holds another key than the
 * recorded one, unless a new key is asked for; recorded at every start.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../../src/protocol/jws.ts';
import { loadSigningKey, SIGNING_KID_META, type SigningKeyStore } from '../../../src/server/keys.ts';

/** A store with or without records, its meta in a map. */
function memoryStore(records: boolean, meta: Record<string, string> = {}): SigningKeyStore & { readonly values: Map<string, string> } {
  const values = new Map(Object.entries(meta));
  return {
    values,
    hasRecords: () => Promise.resolve(records),
    meta: (key) => Promise.resolve(values.get(key)),
    setMeta: (key, value) => {
      values.set(key, value);
      return Promise.resolve();
    },
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mimi-keys-unit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeKey(): Promise<string> {
  const key = await generateSigningKey();
  await writeFile(join(dir, 'dp-x.jwk'), `${JSON.stringify(key.privateJwk)}\n`, { mode: 0o600 });
  return key.kid;
}

describe('loadSigningKey', () => {
  it('creates and records a key for a store without records', async () => {
    const store = memoryStore(false);
    const { key, replaced } = await loadSigningKey(dir, 'dp-x', { store });
    expect(store.values.get(SIGNING_KID_META)).toBe(key.kid);
    expect(replaced).toBeUndefined();
    expect((await stat(join(dir, 'dp-x.jwk'))).isFile()).toBe(true);
  });

  it.each([
    ['the key file is missing', false],
    ['the key file holds another key', true],
  ])('refuses, naming the file, when the store has records and %s', async (_case, present) => {
    if (present) await writeKey();
    const store = memoryStore(true, { [SIGNING_KID_META]: 'the-old-kid' });
    await expect(loadSigningKey(dir, 'dp-x', { store })).rejects.toMatchObject({
      code: 'start_refused',
      message: expect.stringContaining(join(dir, 'dp-x.jwk')),
    });
    expect(store.values.get(SIGNING_KID_META)).toBe('the-old-kid');
    if (!present) await expect(stat(join(dir, 'dp-x.jwk'))).rejects.toThrow();
  });

  it.each([
    ['the key file is missing', false],
    ['the key file holds another key', true],
  ])('signs with the new key when asked (--new-key) and %s, and records it', async (_case, present) => {
    const written = present ? await writeKey() : undefined;
    const store = memoryStore(true, { [SIGNING_KID_META]: 'the-old-kid' });
    const { key, replaced } = await loadSigningKey(dir, 'dp-x', { store, newKey: true });
    if (written !== undefined) expect(key.kid).toBe(written);
    expect(replaced).toBe('the-old-kid');
    expect(store.values.get(SIGNING_KID_META)).toBe(key.kid);
  });

  it('accepts the recorded key, and adopts the key file of a store with records but no recorded key (a store older than the rule)', async () => {
    const kid = await writeKey();
    const same = memoryStore(true, { [SIGNING_KID_META]: kid });
    expect((await loadSigningKey(dir, 'dp-x', { store: same })).key.kid).toBe(kid);
    const older = memoryStore(true);
    expect((await loadSigningKey(dir, 'dp-x', { store: older })).key.kid).toBe(kid);
    expect(older.values.get(SIGNING_KID_META)).toBe(kid);
  });

  it('refuses a missing key file for a store with records even when no key was recorded', async () => {
    await expect(loadSigningKey(dir, 'dp-x', { store: memoryStore(true) })).rejects.toMatchObject({ code: 'start_refused' });
  });
});
