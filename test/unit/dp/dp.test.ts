import { describe, expect, it } from 'vitest';
import { parseCsi } from '../../../src/csi/parse.ts';
import { openSqliteStore } from '../../../src/store/sqlite-store.ts';
import { AuthoritativeDp, emailHashKey } from '../../../src/dp/authoritative-dp.ts';
import { RootDp } from '../../../src/dp/root-dp.ts';
import type { MimiError } from '../../../src/errors.ts';
import { loadZoneDir } from '../../../src/zone/load.ts';
import type { AuthoritativeZone, RootZone } from '../../../src/zone/normalise.ts';

const zones = await loadZoneDir('test/fixtures/hierarchy');
const byId = (id: string) => zones.find((z) => z.zone.id === id)?.zone;

describe('root DP lookup', () => {
  const root = new RootDp(byId('root') as RootZone);
  it('refers by longest match with the registry endpoints', () => {
    expect(root.lookup(parseCsi('+12025550123'))).toEqual({
      kind: 'referral',
      dp: 'root',
      zone: 'e164:1',
      ttl: 86400,
      providers: [{ id: 'dp-nanp', endpoints: ['http://127.0.0.1:20002'], dns: ['127.0.1.12'] }],
    });
    const mail = root.lookup(parseCsi('bob@example.com'));
    expect(mail.kind === 'referral' && mail.providers.map((p) => p.id)).toEqual(['dp-mail-a', 'dp-mail-b']);
  });
  it('denies at the apex when nothing is delegated', () => {
    expect(root.lookup(parseCsi('+33199000000'))).toEqual({ kind: 'not_found', dp: 'root', zone: 'e164:', ttl: 300 });
    expect(root.lookup(parseCsi('bob@example.net'))).toEqual({ kind: 'not_found', dp: 'root', zone: 'email:', ttl: 300 });
  });
  it('serves its zone with a stable entity tag', () => {
    const doc = root.zoneDocument();
    expect(doc.etag).toMatch(/^"2026112301-/);
    expect((JSON.parse(doc.body.toString()) as { delegations: unknown[] }).delegations).toHaveLength(4);
    expect(root.zoneDocument()).toBe(doc);
  });
});

describe('authoritative DP lookup', () => {
  const memory = (id: string) => openSqliteStore(undefined, id, { hashKey: emailHashKey });
  const nanp = new AuthoritativeDp(byId('dp-nanp') as AuthoritativeZone, memory('dp-nanp'));
  const dc = new AuthoritativeDp(byId('dp-dc') as AuthoritativeZone, memory('dp-dc'));
  it('answers mappings sorted by preference, with their own TTL and date', async () => {
    expect(await nanp.lookup(parseCsi('+1 613 555 0101'))).toEqual({
      kind: 'answer',
      dp: 'dp-nanp',
      serial: 2026112301,
      ttl: 3600,
      mappings: [
        { csi: 'tel:+16135550101', msp: 'chat-a', preference: 1 },
        { csi: 'tel:+16135550101', msp: 'chat-b', preference: 2, ttl: 600 },
      ],
    });
  });
  it('refers inside its zone', async () => {
    expect(await nanp.lookup(parseCsi('+12025550123'))).toMatchObject({ kind: 'referral', dp: 'dp-nanp', zone: 'e164:1202', ttl: 3600 });
  });
  it('denies with its zone and negative TTL', async () => {
    expect(await dc.lookup(parseCsi('+12025550100'))).toEqual({ kind: 'not_found', dp: 'dp-dc', zone: 'e164:1202', ttl: 60 });
  });
  it('is not authoritative outside its zones', async () => {
    await expect(dc.lookup(parseCsi('+16135550101'))).rejects.toThrow(expect.objectContaining({ code: 'not_authoritative' }) as MimiError);
  });
});
